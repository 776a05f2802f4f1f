"""What the webhook receiver refuses before reading a body: pure decisions, no I/O.

Anyone can reach a public receiver, so every check here looks only at the request
line, the headers and the peer address, and answers before the body costs memory,
disk or CPU: an address outside ``WEBHOOK_ALLOWED_CIDRS`` (403), a compressed body
(415: the receiver never inflates), a declared length past GitHub's 25 MB cap (413)
and a missing or malformed signature header (401). The concurrency cap (503) and the
body limits applied while reading are in :mod:`agentz_app.ingress.body`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from agentz_app.config import Settings
from agentz_app.github.signatures import well_formed

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB
MEMORY_BODY_BYTES = 1024 * 1024  # a larger body is spooled to a temporary file
RETRY_AFTER_SECONDS = 1

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


@dataclass(frozen=True)
class ReceiverLimits:
    """The limits one receiver applies to every webhook request."""

    read_timeout: float = 10.0
    max_concurrency: int = 64
    allowed_networks: tuple[Network, ...] = ()
    trusted_proxies: tuple[Network, ...] = ()
    max_body_bytes: int = MAX_BODY_BYTES
    memory_body_bytes: int = MEMORY_BODY_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> ReceiverLimits:
        """The limits configured by the ``WEBHOOK_*`` settings."""
        return cls(
            read_timeout=settings.webhook_read_timeout_seconds,
            max_concurrency=settings.webhook_max_concurrency,
            allowed_networks=tuple(settings.webhook_allowed_cidrs),
            trusted_proxies=tuple(settings.webhook_trusted_proxies),
        )


@dataclass(frozen=True)
class Refusal:
    """An answer given instead of reading the body; the connection is closed after it."""

    status: int
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)


def parse_address(text: str | None) -> Address | None:
    """An IP address from text (IPv4-mapped IPv6 becomes IPv4); None when it is not one."""
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[Network]
) -> Address | None:
    """The address that sent the request.

    ``X-Forwarded-For`` counts only when the peer is a trusted proxy: walking the
    list from the right (the hop nearest to us), the first address that is not a
    trusted proxy is the client. Entries left of it were written by the client and
    are ignored. None when an address on the way is missing or malformed.
    """
    address = parse_address(peer)
    if address is None or not trusted_proxies:
        return address
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    while _within(address, trusted_proxies) and hops:
        address = parse_address(hops.pop())
        if address is None:
            return None
    return address


def refuse_address(address: Address | None, allowed: Sequence[Network]) -> Refusal | None:
    """403 for an address outside a non-empty allowlist (or an unknown one)."""
    if not allowed or (address is not None and _within(address, allowed)):
        return None
    return Refusal(403, "address not allowed to deliver webhooks")


def refuse_headers(headers: Mapping[str, str], *, max_body_bytes: int = MAX_BODY_BYTES) -> Refusal | None:
    """415 for any encoding but identity, 413 past the size cap, 401 without a signature."""
    encoding = headers.get("Content-Encoding", "")
    if any(token.strip().lower() not in ("", "identity") for token in encoding.split(",")):
        return Refusal(415, "Content-Encoding is not supported; send the body uncompressed")
    length = headers.get("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > max_body_bytes:
        return Refusal(413, f"body is larger than {max_body_bytes} bytes")
    if not well_formed(headers.get("X-Hub-Signature-256")):
        return Refusal(401, "missing or invalid X-Hub-Signature-256")
    return None


def busy() -> Refusal:
    """503 with ``Retry-After``: ``WEBHOOK_MAX_CONCURRENCY`` requests are already being received."""
    return Refusal(503, "too many webhook requests in flight", {"Retry-After": str(RETRY_AFTER_SECONDS)})
