"""Reading rate-limit answers from status, headers and body."""

from __future__ import annotations

from email.utils import formatdate
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentz_app.github.ratelimit import (
    MIN_PRIMARY_WAIT,
    SECONDARY_DEFAULT_WAIT,
    RateLimitHit,
    classify,
    exhausted_until,
    header,
    parse_retry_after,
    resource_for_path,
    response_message,
)

SAMPLES = Path(__file__).parent.parent / "samples" / "github"
NOW = 1_700_000_000.0


def sample(case: str, status: int) -> bytes:
    return (SAMPLES / case / f"{status}.json").read_bytes()


def test_retry_after_header_is_a_secondary_limit_with_that_wait() -> None:
    hit = classify(429, {"Retry-After": "7"}, b"", now=NOW)
    assert hit == RateLimitHit("secondary", 7.0, NOW + 7, "*")


def test_retry_after_wins_over_exhausted_primary_headers() -> None:
    headers = {"retry-after": "3", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 600)}
    hit = classify(403, headers, b"", now=NOW)
    assert hit is not None
    assert hit.kind == "secondary"
    assert hit.wait == 3.0


def test_exhausted_primary_limit_waits_until_reset() -> None:
    headers = {
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": str(int(NOW) + 42),
        "x-ratelimit-resource": "core",
    }
    hit = classify(403, headers, sample("primary_rate_limit", 403), now=NOW)
    assert hit == RateLimitHit("primary", 42.0, NOW + 42, "core")


def test_primary_reset_in_the_past_still_waits_a_moment() -> None:
    hit = classify(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 5)}, b"", now=NOW)
    assert hit is not None
    assert hit.kind == "primary"
    assert hit.wait == MIN_PRIMARY_WAIT


def test_primary_limit_without_reset_waits_the_default() -> None:
    hit = classify(429, {"x-ratelimit-remaining": "0"}, b"", now=NOW, path="/search/issues")
    assert hit == RateLimitHit("primary", SECONDARY_DEFAULT_WAIT, NOW + SECONDARY_DEFAULT_WAIT, "search")


def test_secondary_limit_message_without_headers_waits_a_minute() -> None:
    hit = classify(403, {"x-ratelimit-remaining": "4999"}, sample("secondary_rate_limit", 403), now=NOW)
    assert hit == RateLimitHit("secondary", 60.0, NOW + 60, "*")


def test_bare_429_is_a_secondary_limit() -> None:
    hit = classify(429, {}, b"", now=NOW)
    assert hit is not None
    assert hit.kind == "secondary"
    assert hit.wait == SECONDARY_DEFAULT_WAIT


def test_permission_403_is_not_a_rate_limit() -> None:
    assert classify(403, {"x-ratelimit-remaining": "4999"}, sample("resource_not_accessible", 403), now=NOW) is None


@pytest.mark.parametrize("status", [200, 201, 304, 401, 404, 422, 500, 502])
def test_other_statuses_are_never_rate_limits(status: int) -> None:
    assert classify(status, {"retry-after": "5", "x-ratelimit-remaining": "0"}, b"", now=NOW) is None


def test_retry_after_as_http_date() -> None:
    assert parse_retry_after(formatdate(NOW + 90, usegmt=True), now=NOW) == pytest.approx(90.0)
    assert parse_retry_after(formatdate(NOW - 90, usegmt=True), now=NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "  ", "soon", "nan", "inf"])
def test_unreadable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@given(st.text(max_size=40))
def test_any_retry_after_text_gives_none_or_a_non_negative_wait(value: str) -> None:
    wait = parse_retry_after(value, now=NOW)
    assert wait is None or wait >= 0


def test_exhausted_until_reads_successful_responses() -> None:
    assert exhausted_until({"x-ratelimit-remaining": "1", "x-ratelimit-reset": "1"}, now=NOW) is None
    assert exhausted_until({}, now=NOW) is None
    assert exhausted_until({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 9)}, now=NOW) == NOW + 9
    assert exhausted_until({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 9)}, now=NOW) is None


def test_header_lookup_ignores_case() -> None:
    assert header({"X-RateLimit-Reset": "5"}, "x-ratelimit-reset") == "5"
    assert header({}, "etag") is None


@pytest.mark.parametrize(
    ("path", "resource"),
    [("/search/issues", "search"), ("/graphql", "graphql"), ("/repos/o/r", "core"), ("/searching", "core")],
)
def test_resource_is_guessed_from_the_path(path: str, resource: str) -> None:
    assert resource_for_path(path) == resource


def test_response_message_reads_json_bytes_text_and_objects() -> None:
    assert response_message(b'{"message": "Not Found"}') == "Not Found"
    assert response_message("plain failure") == "plain failure"
    assert response_message({"message": 3}) == ""
    assert response_message(None) == ""
    assert response_message(b"\xff\xfe") != "x"


def test_repeated_secondary_limits_without_retry_after_back_off_exponentially() -> None:
    waits = [
        hit.wait
        for previous in range(4)
        if (hit := classify(403, {}, sample("secondary_rate_limit", 403), now=NOW, previous_hits=previous))
    ]
    assert waits == [60.0, 120.0, 240.0, 480.0]
    retry_after = classify(429, {"retry-after": "5"}, b"", now=NOW, previous_hits=3)
    assert retry_after is not None
    assert retry_after.wait == 5.0
