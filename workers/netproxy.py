"""The allowlist proxy a sandboxed agent reaches the network through.

The agent's sandbox has its own, empty network namespace. Its only way out is a
Unix socket bound into it, behind which this proxy runs in the worker. It speaks
enough HTTP proxying for the agent CLIs: ``CONNECT host:port`` (HTTPS) and
absolute-form requests (``GET http://host:port/...``). A destination that is not
on the allowlist gets 403 and is counted, so a run can report what it was refused.
The proxy resolves and dials itself; the sandbox needs no DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agentz_app.logs import get_logger

_HEAD_LIMIT = 64 * 1024
_HEAD_TIMEOUT = 30.0
_DIAL_TIMEOUT = 15.0
_CHUNK = 64 * 1024

log = get_logger("agentz.netproxy")


@dataclass(frozen=True, order=True)
class Destination:
    """A host and TCP port, as the agent asked for it."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, value: str, *, default_port: int = 443) -> Destination:
        """``host``, ``host:port``, ``[v6]:port`` or an ``http(s)://`` URL."""
        text = value.strip()
        if "://" in text:
            parts = urlsplit(text)
            if not parts.hostname:
                raise ValueError(f"no host in {value!r}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            return cls(parts.hostname.lower(), port)
        parts = urlsplit(f"//{text}")
        if not parts.hostname:
            raise ValueError(f"no host in {value!r}")
        try:
            port = parts.port or default_port
        except ValueError:
            raise ValueError(f"bad port in {value!r}") from None
        return cls(parts.hostname.lower(), port)


class AllowlistProxy:
    """An HTTP proxy on a Unix socket that only dials allowed destinations."""

    def __init__(self, allowed: Iterable[Destination]) -> None:
        self.allowed = frozenset(allowed)
        self.blocked: Counter[str] = Counter()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, socket_path: Path) -> None:
        """Listen on ``socket_path`` (mode 0600: only this user's sandboxes can connect)."""
        self._server = await asyncio.start_unix_server(self._serve, path=str(socket_path), limit=_HEAD_LIMIT)
        await asyncio.to_thread(socket_path.chmod, 0o600)

    async def close(self) -> None:
        """Stop listening and cut every open tunnel."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            request = _parse_head(head)
            if request is None:
                await _answer(writer, 400, "Bad Request")
                return
            method, destination, forward = request
            if destination not in self.allowed:
                self.blocked[str(destination)] += 1
                log.info("sandbox network request refused", destination=str(destination), method=method)
                await _answer(writer, 403, "Forbidden")
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(destination.host, destination.port, limit=_CHUNK), _DIAL_TIMEOUT
                )
            except (OSError, TimeoutError):
                await _answer(writer, 502, "Bad Gateway")
                return
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                await writer.drain()
            else:
                up_writer.write(forward)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _parse_head(head: bytes) -> tuple[str, Destination, bytes] | None:
    """(method, destination, head to forward) of a proxy request, or None when malformed."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    request_line, _, rest = text.partition("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    method, target, version = parts
    try:
        if method == "CONNECT":
            return method, Destination.parse(target, default_port=443), b""
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            return None
        destination = Destination(url.hostname.lower(), url.port or 80)
    except ValueError:
        return None
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    headers = [line for line in rest.split("\r\n") if line and not line.lower().startswith("proxy-")]
    forward = "\r\n".join([f"{method} {path} {version}", *headers]) + "\r\n\r\n"
    return method, destination, forward.encode("latin-1")


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = f"{status} {reason}: blocked by the Agent-Z sandbox network policy\n".encode()
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n".encode() + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
