"""Waiting in tests without fixed pauses: poll a condition and fail, saying what was awaited, on timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

POLL_SECONDS = 0.01


@overload
async def wait_for(predicate: Callable[[], Awaitable[T | None]], *, timeout: float, what: str,
                   interval: float = POLL_SECONDS) -> T: ...


@overload
async def wait_for(predicate: Callable[[], T | None], *, timeout: float, what: str,
                   interval: float = POLL_SECONDS) -> T: ...


async def wait_for(predicate: Callable[[], object], *, timeout: float, what: str,
                   interval: float = POLL_SECONDS) -> Any:
    """Poll ``predicate`` until it returns a truthy value and return that; fail naming ``what`` on timeout.

    Shaped like :func:`asyncio.wait_for`, but the failure says what was awaited and what was last seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {value!r})")
        await asyncio.sleep(interval)


def wait_for_sync(predicate: Callable[[], T], *, timeout: float, what: str, interval: float = POLL_SECONDS) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {value!r})")
        time.sleep(interval)
