"""App JWTs and the installation token cache."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agentz_app.errors import ConfigError, GitHubError
from agentz_app.github.auth import AppJWT, InstallationToken, InstallationTokens, make_app_jwt, parse_token_response

SAMPLES = Path(__file__).parent.parent / "samples" / "github"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


def test_app_jwt_claims_verify_with_the_public_key(rsa_key: rsa.RSAPrivateKey, pem: str) -> None:
    now = time.time()
    token = make_app_jwt(12345, pem)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"])
    assert claims["iss"] == "12345"
    assert abs(claims["iat"] - (now - 60)) <= 2
    assert claims["exp"] <= now + 600
    assert claims["exp"] > now + 60


def test_app_jwt_uses_the_given_time(rsa_key: rsa.RSAPrivateKey, pem: str) -> None:
    token = make_app_jwt(7, pem, now=1_000_000.0)
    claims = jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"], options={"verify_exp": False})
    assert (claims["iat"], claims["exp"], claims["iss"]) == (1_000_000 - 60, 1_000_000 + 540, "7")


def test_app_jwt_signed_with_another_key_does_not_verify(pem: str) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(make_app_jwt(7, pem), other.public_key(), algorithms=["RS256"])


def test_unreadable_or_non_rsa_keys_fail_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        make_app_jwt(7, "-----BEGIN RSA PRIVATE KEY-----\nnope\n-----END RSA PRIVATE KEY-----\n")
    assert caught.value.variable == "GITHUB_PRIVATE_KEY"
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(ConfigError, match="RSA"):
        make_app_jwt(7, ec_pem)
    with pytest.raises(ConfigError) as bad_id:
        make_app_jwt(0, ec_pem)
    assert bad_id.value.variable == "GITHUB_APP_ID"


def test_app_jwt_is_reused_then_signed_again_before_it_expires(rsa_key: rsa.RSAPrivateKey, pem: str) -> None:
    now = [time.time()]
    issuer = AppJWT(9, pem, clock=lambda: now[0])
    first = issuer()
    now[0] += 200
    assert issuer() == first
    now[0] += 150
    renewed = issuer()
    assert renewed != first
    claims = jwt.decode(renewed, rsa_key.public_key(), algorithms=["RS256"], options={"verify_iat": False})
    assert claims["iat"] == int(now[0]) - 60
    assert "BEGIN" not in repr(issuer)
    assert first not in repr(issuer)


def test_token_response_sample_parses() -> None:
    data = json.loads((SAMPLES / "installation_token" / "201.json").read_text())
    parsed = parse_token_response(data)
    assert parsed.token == data["token"]
    assert parsed.expires_at == datetime(2016, 7, 11, 22, 14, 10, tzinfo=UTC).timestamp()
    assert data["token"] not in repr(parsed)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"expires_at": "2030-01-01T00:00:00Z"},
        {"token": "", "expires_at": "2030-01-01T00:00:00Z"},
        {"token": "t"},
        {"token": "t", "expires_at": "tomorrow"},
        {"token": "t", "expires_at": "2030-01-01T00:00:00"},
    ],
)
def test_malformed_token_responses_raise_github_error(data: Any) -> None:
    with pytest.raises(GitHubError):
        parse_token_response(data)


def test_tokens_of_any_length_are_accepted() -> None:
    long_token = "ghs_" + "x" * 600
    assert parse_token_response({"token": long_token, "expires_at": "2030-01-01T00:00:00+00:00"}).token == long_token


class CountingFetch:
    def __init__(self, lifetime: float = 3600.0) -> None:
        self.calls: list[int] = []
        self.lifetime = lifetime

    async def __call__(self, installation_id: int) -> dict[str, str]:
        self.calls.append(installation_id)
        await asyncio.sleep(0)  # let the other callers ask while this fetch is in flight
        expires = datetime.fromtimestamp(time.time() + self.lifetime, UTC).isoformat()
        return {"token": f"tok-{installation_id}-{len(self.calls)}", "expires_at": expires}


async def test_concurrent_callers_share_one_fetch_per_installation() -> None:
    fetch = CountingFetch()
    tokens = InstallationTokens(fetch)
    results = await asyncio.gather(*(tokens.get(1) for _ in range(50)), *(tokens.get(2) for _ in range(50)))
    assert len(set(results[:50])) == 1
    assert results[0].startswith("tok-1-")
    assert len(set(results[50:])) == 1
    assert results[50].startswith("tok-2-")
    assert sorted(fetch.calls) == [1, 2]


async def test_token_is_refreshed_inside_the_margin_before_expiry() -> None:
    now = [time.time()]
    fetch = CountingFetch(lifetime=3600)
    tokens = InstallationTokens(fetch, clock=lambda: now[0])
    first = await tokens.get(5)
    now[0] += 3600 - 301
    assert await tokens.get(5) == first
    now[0] += 2
    assert await tokens.get(5) != first
    assert fetch.calls == [5, 5]


async def test_invalidate_drops_only_the_rejected_token() -> None:
    fetch = CountingFetch()
    tokens = InstallationTokens(fetch)
    first = await tokens.get(3)
    tokens.invalidate(3)
    second = await tokens.get(3)
    assert second != first
    tokens.invalidate(3, first)  # a late 401 for the old token keeps the new one
    assert await tokens.get(3) == second
    tokens.invalidate(3, second)
    assert await tokens.get(3) not in (first, second)
    assert second not in repr(tokens)


async def test_failed_fetch_is_not_cached_and_next_caller_retries() -> None:
    attempts: list[int] = []

    async def flaky(installation_id: int) -> dict[str, str]:
        attempts.append(installation_id)
        if len(attempts) == 1:
            raise GitHubError(502, "bad gateway")
        return {"token": "ok", "expires_at": "2100-01-01T00:00:00Z"}

    tokens = InstallationTokens(flaky)
    with pytest.raises(GitHubError):
        await tokens.get(4)
    assert await tokens.get(4) == "ok"
    assert isinstance(await tokens.get_token(4), InstallationToken)
    with pytest.raises(ValueError, match="installation id must be positive"):
        await tokens.get(0)
