"""The receiver's pre-body decisions, body reader and settings, without a server."""

from __future__ import annotations

import asyncio
import ipaddress
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agentz_app.config import Settings
from agentz_app.errors import ConfigError
from agentz_app.github.signatures import sign
from agentz_app.ingress.body import BodyTooLarge, InFlight, receive_body
from agentz_app.ingress.limits import (
    ReceiverLimits,
    client_address,
    parse_address,
    refuse_address,
    refuse_headers,
)
from bench.flood import FloodSize, flood_figures

SECRET = b"secret"
SIGNED = {"X-Hub-Signature-256": "sha256=" + "a" * 64}


def networks(*cidrs: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr) for cidr in cidrs]


class FakeStream:
    """Hands out chunks and counts how many were taken; ``stall`` waits forever once they run out."""

    def __init__(self, chunks: list[bytes], *, stall: bool = False) -> None:
        self.chunks = list(chunks)
        self.stall = stall
        self.taken = 0

    async def readany(self) -> bytes:
        if not self.chunks:
            if self.stall:
                await asyncio.Event().wait()
            return b""
        self.taken += 1
        return self.chunks.pop(0)


# Addresses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded", "proxies", "expected"),
    [
        ("203.0.113.9", [], [], "203.0.113.9"),
        ("203.0.113.9", ["192.30.252.7"], [], "203.0.113.9"),
        ("127.0.0.1", ["192.30.252.7"], ["127.0.0.1/32"], "192.30.252.7"),
        ("203.0.113.9", ["192.30.252.7"], ["127.0.0.1/32"], "203.0.113.9"),
        ("127.0.0.1", ["192.30.252.7, 203.0.113.9"], ["127.0.0.1/32"], "203.0.113.9"),
        ("127.0.0.1", ["192.30.252.7", "10.0.0.2"], ["127.0.0.1/32", "10.0.0.0/8"], "192.30.252.7"),
        ("127.0.0.1", ["10.0.0.2"], ["127.0.0.1/32", "10.0.0.0/8"], "10.0.0.2"),
        ("127.0.0.1", [], ["127.0.0.1/32"], "127.0.0.1"),
        ("127.0.0.1", ["garbage"], ["127.0.0.1/32"], None),
        ("::ffff:192.30.252.7", [], [], "192.30.252.7"),
        (None, [], [], None),
    ],
    ids=["peer", "header-ignored-without-proxies", "via-proxy", "header-ignored-from-untrusted-peer",
         "client-written-entries-ignored", "two-proxies-two-headers", "every-hop-a-proxy-keeps-the-last",
         "proxy-without-header", "garbage-hop", "ipv4-mapped", "no-peer"],
)
def test_client_address(peer: str | None, forwarded: list[str], proxies: list[str], expected: str | None) -> None:
    address = client_address(peer, forwarded, networks(*proxies))
    assert address == (None if expected is None else ipaddress.ip_address(expected))


def test_an_empty_allowlist_allows_any_address_and_a_set_one_refuses_unknown_ones() -> None:
    assert refuse_address(parse_address("203.0.113.9"), []) is None
    assert refuse_address(None, []) is None
    refused = refuse_address(parse_address("203.0.113.9"), networks("192.30.252.0/22"))
    assert refused is not None
    assert refused.status == 403
    unknown = refuse_address(None, networks("192.30.252.0/22"))
    assert unknown is not None
    assert unknown.status == 403
    assert refuse_address(parse_address("192.30.255.1"), networks("192.30.252.0/22")) is None
    assert refuse_address(parse_address("2a0a:a440::1"), networks("192.30.252.0/22", "2a0a:a440::/29")) is None


# Headers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Hub-Signature-256": "sha256=short"}, 401),
        ({"X-Hub-Signature-256": "sha1=" + "a" * 40}, 401),
        (SIGNED, None),
        ({**SIGNED, "Content-Encoding": "identity"}, None),
        ({**SIGNED, "Content-Encoding": ""}, None),
        ({**SIGNED, "Content-Encoding": "gzip"}, 415),
        ({**SIGNED, "Content-Encoding": "Deflate"}, 415),
        ({**SIGNED, "Content-Encoding": "identity, br"}, 415),
        ({**SIGNED, "Content-Encoding": "x-made-up"}, 415),
        ({**SIGNED, "Content-Length": str(25 * 1024 * 1024)}, None),
        ({**SIGNED, "Content-Length": str(25 * 1024 * 1024 + 1)}, 413),
        ({"Content-Encoding": "gzip", "Content-Length": "999999999999"}, 415),
    ],
    ids=["no-signature", "short-signature", "sha1-signature", "signed", "identity", "empty-encoding", "gzip",
         "deflate", "identity-then-br", "unknown", "at-cap", "past-cap", "encoding-first"],
)
def test_refuse_headers(headers: dict[str, str], status: int | None) -> None:
    refusal = refuse_headers(headers)
    assert (None if refusal is None else refusal.status) == status


def test_concurrency_share_for_large_bodies() -> None:
    places = InFlight(limit=4)
    assert places.try_enter(large=True)
    assert not places.try_enter(large=True)
    assert places.try_enter(large=False)
    assert places.try_enter(large=False)
    assert places.try_enter(large=False)
    assert not places.try_enter(large=False)
    places.leave(large=True)
    assert places.try_enter(large=True)
    assert InFlight(limit=1).try_enter(large=True)


# Bodies ------------------------------------------------------------------------


async def test_small_body_stays_in_memory_and_is_signed_as_a_whole(tmp_path: Path) -> None:
    chunks = [b"a" * 40, b"b" * 40]
    body = await receive_body(FakeStream(chunks), SECRET, max_bytes=1000, memory_bytes=100,
                              spool_dir=tmp_path / "spool")
    assert not body.spooled
    assert await body.read() == b"".join(chunks)
    assert body.signature == sign(SECRET, b"".join(chunks))
    assert not (tmp_path / "spool").exists()


@pytest.mark.parametrize("declared", [None, 400], ids=["unknown-length", "declared-length"])
@pytest.mark.parametrize("on_thread", [False, True], ids=["on-loop", "on-spool-thread"])
async def test_body_past_the_memory_share_is_spooled_and_read_back_whole(
    tmp_path: Path, declared: int | None, on_thread: bool
) -> None:
    chunks = [bytes([value]) * 80 for value in range(5)]
    with ThreadPoolExecutor(max_workers=1) as executor:
        body = await receive_body(FakeStream(chunks), SECRET, max_bytes=1000, memory_bytes=100,
                                  spool_dir=tmp_path / "spool", declared_length=declared,
                                  executor=executor if on_thread else None)
        try:
            assert body.spooled
            assert body.size == 400
            assert await body.read() == b"".join(chunks)
            assert body.signature == sign(SECRET, b"".join(chunks))
        finally:
            body.close()
    assert not body.spooled


async def test_body_past_the_cap_stops_being_read(tmp_path: Path) -> None:
    stream = FakeStream([b"x" * 400] * 10)
    with pytest.raises(BodyTooLarge):
        await receive_body(stream, SECRET, max_bytes=1000, memory_bytes=100, spool_dir=tmp_path)
    assert stream.taken == 3  # the chunk that crossed the cap was the last one taken


async def test_a_body_that_stops_arriving_is_given_up_at_the_callers_deadline(tmp_path: Path) -> None:
    stream = FakeStream([b"{"], stall=True)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await receive_body(stream, SECRET, max_bytes=1000, memory_bytes=100, spool_dir=tmp_path)
    assert stream.taken == 1


# Settings ----------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_receiver_limit_defaults(clean_env: pytest.MonkeyPatch) -> None:
    limits = ReceiverLimits.from_settings(Settings.load(None))
    assert (limits.read_timeout, limits.max_concurrency) == (10.0, 64)
    assert limits.allowed_networks == ()
    assert limits.trusted_proxies == ()


def test_receiver_limits_are_read_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WEBHOOK_READ_TIMEOUT_SECONDS", "2.5")
    clean_env.setenv("WEBHOOK_MAX_CONCURRENCY", "8")
    clean_env.setenv("WEBHOOK_ALLOWED_CIDRS", "192.30.252.0/22, 2a0a:a440::/29,")
    clean_env.setenv("WEBHOOK_TRUSTED_PROXIES", "127.0.0.1")
    limits = ReceiverLimits.from_settings(Settings.load(None))
    assert (limits.read_timeout, limits.max_concurrency) == (2.5, 8)
    assert limits.allowed_networks == tuple(networks("192.30.252.0/22", "2a0a:a440::/29"))
    assert limits.trusted_proxies == tuple(networks("127.0.0.1/32"))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEBHOOK_READ_TIMEOUT_SECONDS", "0"),
        ("WEBHOOK_READ_TIMEOUT_SECONDS", "soon"),
        ("WEBHOOK_MAX_CONCURRENCY", "0"),
        ("WEBHOOK_MAX_CONCURRENCY", "many"),
        ("WEBHOOK_ALLOWED_CIDRS", "192.30.252.0/33"),
        ("WEBHOOK_ALLOWED_CIDRS", "192.30.252.1/22"),
        ("WEBHOOK_ALLOWED_CIDRS", "192.30.252.0/22,github"),
        ("WEBHOOK_TRUSTED_PROXIES", "localhost"),
    ],
)
def test_bad_receiver_limit_is_a_config_error_naming_the_variable(
    clean_env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        Settings.load(None)


# Flood figures -----------------------------------------------------------------


def test_flood_counts_unstored_valid_deliveries_as_lost_and_each_missed_target() -> None:
    size = FloodSize(big=1, bombs=1, slow=1, read_timeout=1.0)
    attacked = {"big": [(401, 1.0)], "bombs": [(415, 0.0)], "slow": [(408, 1.0)]}
    valid = [("a", 202, 10.0), ("b", 503, 1.0), ("c", 202, 1500.0)]
    figures = flood_figures(size, (80.0, 160.0, 90.0), attacked, valid, ["a", "c"])
    assert (figures["lost"], figures["missed_targets"]) == (1, 2)
    assert figures["valid_answers"] == "202x2,503x1"
    calm = flood_figures(size, (80.0, 100.0, 90.0), attacked, valid[:1], ["a"])
    assert (calm["lost"], calm["missed_targets"]) == (0, 0)
