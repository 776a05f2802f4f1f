"""Webhook signatures (``X-Hub-Signature-256``): pure functions, constant-time compare."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="
_HEX_LENGTH = 64


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value GitHub would send for ``body``."""
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def new_signer(secret: bytes) -> hmac.HMAC:
    """An HMAC to feed a body in pieces; ``PREFIX + signer.hexdigest()`` is its header value."""
    return hmac.new(secret, digestmod=hashlib.sha256)


def well_formed(header: str | None) -> bool:
    """True when ``header`` has the shape of a SHA-256 signature (it may still be wrong)."""
    if header is None:
        return False
    header = header.strip()
    return header.isascii() and header.startswith(PREFIX) and len(header) == len(PREFIX) + _HEX_LENGTH


def signature_matches(expected: str, header: str | None) -> bool:
    """Compare a computed signature with the received header in constant time."""
    if header is None or not well_formed(header):
        return False
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode())


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True only when ``header`` is a well-formed SHA-256 signature of ``body`` under ``secret``."""
    if not secret:
        return False
    return signature_matches(sign(secret, body), header)
