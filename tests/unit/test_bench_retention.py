"""The retention benchmark's pure helpers."""

from __future__ import annotations

import json

from bench.retention import DAY, START, day_rows, payload_text


def test_payloads_are_json_of_about_the_asked_size() -> None:
    text = payload_text(4000, 7)
    assert len(text) == 4000
    assert json.loads(text)["comment"]["id"] == 7


def test_a_day_of_rows_arrives_within_that_day_with_unique_ids() -> None:
    rows = day_rows(3, 10, payload_text(500, 0))
    assert len(rows) == 11
    assert len({row["delivery_id"] for row in rows}) == 11
    assert all(START + 3 * DAY <= row["received_at"] < START + 4 * DAY for row in rows)
