"""Receive a webhook body with bounded memory and time, signing it as it arrives.

:func:`receive_body` reads the request stream chunk by chunk under one deadline for
the whole body, feeds every chunk to the HMAC, keeps up to ``memory_body_bytes`` in
memory and moves the rest to an anonymous temporary file, and stops at the size cap.
Nothing is parsed here: the caller checks :attr:`ReceivedBody.signature` first and
only then asks for the bytes. :class:`InFlight` counts the requests being received.
"""

from __future__ import annotations

import asyncio
import hmac
import tempfile
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from agentz_app.github.signatures import PREFIX, new_signer


class BodyTooLarge(Exception):
    """The body went past the size cap; the rest was not read."""


class ChunkStream(Protocol):
    """The part of :class:`aiohttp.StreamReader` used here."""

    async def readany(self) -> bytes: ...


@dataclass
class ReceivedBody:
    """A body read in full: its signature header value, size, and bytes in memory or on disk.

    With an ``executor`` (one thread) the spool file is written, read and closed there,
    in submission order, so the event loop never waits for the disk.
    """

    spool_dir: Path
    memory_bytes: int
    executor: Executor | None = None
    signature: str = ""
    size: int = 0
    _chunks: list[bytes] = field(default_factory=list, repr=False)
    _spool: IO[bytes] | None = field(default=None, repr=False)

    @property
    def spooled(self) -> bool:
        return self._spool is not None

    def fits_in_memory(self, more: int) -> bool:
        """True while ``more`` bytes can still be kept in memory."""
        return self._spool is None and self.size + more <= self.memory_bytes

    def append(self, chunk: bytes) -> None:
        """Keep a chunk in memory, or in the spool file once the body outgrows ``memory_bytes``."""
        if self.fits_in_memory(len(chunk)):
            self._chunks.append(chunk)
            self.size += len(chunk)
            return
        if self._spool is None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            self._spool = tempfile.TemporaryFile(dir=self.spool_dir, prefix="webhook-")  # noqa: SIM115 - see close()
            self._spool.writelines(self._chunks)
            self._chunks.clear()
        self._spool.write(chunk)
        self.size += len(chunk)

    async def read(self) -> bytes:
        """The whole body (read back from the spool file off the event loop)."""
        if self._spool is None:
            return b"".join(self._chunks)
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._read_spool)

    def _read_spool(self) -> bytes:
        assert self._spool is not None
        self._spool.seek(0)
        return self._spool.read()

    def close(self) -> None:
        """Free the memory and delete the temporary file (after any write still under way)."""
        self._chunks.clear()
        if self._spool is None:
            return
        if self.executor is not None:
            self.executor.submit(self._close_spool)
        else:
            self._close_spool()

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None


def _sign_and_append(signer: hmac.HMAC, body: ReceivedBody, chunk: bytes) -> None:
    signer.update(chunk)
    body.append(chunk)


async def receive_body(
    stream: ChunkStream,
    secret: bytes,
    *,
    max_bytes: int,
    memory_bytes: int,
    spool_dir: Path,
    declared_length: int | None = None,
    executor: Executor | None = None,
) -> ReceivedBody:
    """Read a body in full; raise :class:`BodyTooLarge` instead of growing past ``max_bytes``.

    The caller bounds the time with ``asyncio.timeout``: a cancelled read closes what it spooled.
    Chunks kept in memory are signed on the event loop; chunks bound for the spool file
    are signed and written on ``executor`` when one is given (hashing releases the GIL).
    """
    loop = asyncio.get_running_loop()
    signer = new_signer(secret)
    # A body declared larger than the memory share goes to disk from its first byte.
    large = declared_length is not None and declared_length > memory_bytes
    body = ReceivedBody(spool_dir, 0 if large else memory_bytes, executor)
    try:
        while chunk := await stream.readany():
            if body.size + len(chunk) > max_bytes:
                raise BodyTooLarge(f"body is larger than {max_bytes} bytes")
            if executor is None or body.fits_in_memory(len(chunk)):
                _sign_and_append(signer, body, chunk)
            else:
                await loop.run_in_executor(executor, _sign_and_append, signer, body, chunk)
    except BaseException:
        body.close()
        raise
    body.signature = PREFIX + signer.hexdigest()
    return body


@dataclass
class InFlight:
    """How many webhook bodies are being received, up to a limit (one event loop, no lock).

    A large body (declared past the memory share, or of unknown length) costs disk,
    CPU and time in proportion to its size, and GitHub rarely sends one, so large
    bodies may take only a quarter of the places: a flood of them leaves room for the
    small deliveries that make up nearly all of GitHub's traffic.
    """

    limit: int
    count: int = 0
    large: int = 0

    @property
    def large_limit(self) -> int:
        return max(1, self.limit // 4)

    def try_enter(self, *, large: bool) -> bool:
        """Take a place; False when all places (or all places for large bodies) are taken."""
        if self.count >= self.limit or (large and self.large >= self.large_limit):
            return False
        self.count += 1
        self.large += large
        return True

    def leave(self, *, large: bool) -> None:
        """Give back a place taken with the same ``large``."""
        self.count -= 1
        self.large -= large
