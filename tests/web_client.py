"""The type of aiohttp's test client for one of our ``web.Application`` instances."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient

AppClient = TestClient[web.Request, web.Application]
