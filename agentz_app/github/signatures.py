"""Webhook signatures (``X-Hub-Signature-256``): pure functions, constant-time compare."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="
_HEX_LENGTH = 64


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value GitHub would send for ``body``."""
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True only when ``header`` is a well-formed SHA-256 signature of ``body`` under ``secret``."""
    if not secret or header is None:
        return False
    header = header.strip()
    if not header.isascii() or not header.startswith(PREFIX) or len(header) != len(PREFIX) + _HEX_LENGTH:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.lower().encode())
