"""Secret patterns and configured values: what is recognised, what is redacted, and in linear time."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentz_app.config import Settings
from agentz_app.secrets import (
    REDACTED,
    configured_secret_values,
    find_secrets,
    redact_key_lines,
    redact_text,
)
from tests import secret_samples as samples


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings.load(None, state_dir=tmp_path, **overrides)


@pytest.mark.parametrize(("name", "value"), samples.SHAPED)
def test_every_shaped_secret_is_redacted_mid_sentence(name: str, value: str) -> None:
    redacted = redact_text(f"the {name} is {value}, keep it safe")
    assert value not in redacted
    assert REDACTED in redacted
    assert redacted.startswith(f"the {name} is ")
    assert redacted.endswith(", keep it safe")


def test_jwts_url_passwords_and_git_tokens_are_redacted() -> None:
    text = (f"Bearer {samples.JWT} postgresql://agentz:{samples.DB_PASSWORD}@db:5432/agentz "
            "https://x-access-token:abc123@github.com/o/r.git")
    redacted = redact_text(text)
    assert samples.JWT not in redacted
    assert samples.DB_PASSWORD not in redacted
    assert "abc123" not in redacted
    assert "@db:5432/agentz" in redacted


def test_aws_secret_key_assignment_is_redacted() -> None:
    redacted = redact_text(f'aws_secret_access_key = "{samples.AWS_SECRET}"')
    assert samples.AWS_SECRET not in redacted


@pytest.mark.parametrize("pem", [samples.rsa_pem, samples.ec_pem, samples.openssh_pem], ids=["pkcs8", "ec", "openssh"])
def test_a_whole_private_key_block_of_any_kind_is_redacted(pem: object) -> None:
    key = pem()  # type: ignore[operator]
    redacted = redact_text(f"before\n{key}after")
    assert redacted == f"before\n{REDACTED}\nafter"


def test_a_private_key_without_its_end_line_is_redacted_to_the_end_of_its_body() -> None:
    key = samples.rsa_pem()
    cut = key[: len(key) // 2]
    redacted = redact_text(cut + " and then prose")
    assert all(line not in redacted for line in samples.pem_body_lines(cut)[:-1])
    assert redacted.endswith(" and then prose")


def test_private_key_lines_printed_one_by_one_are_blanked() -> None:
    inside = False
    logged = []
    for line in [*samples.rsa_pem().splitlines(), "done"]:
        line, inside = redact_key_lines(line, inside)
        logged.append(redact_text(line))
    assert logged[-1] == "done"
    assert not any(body in "\n".join(logged) for body in samples.pem_body_lines(samples.rsa_pem()))


def test_short_or_low_entropy_sk_words_are_not_api_keys() -> None:
    text = "pip install sk-learn; sk-this-is-not-a-real-key-only-words-here-ok"
    assert redact_text(text) == text


def test_configured_values_are_redacted_with_their_base64_and_hex_encodings() -> None:
    value = samples.PROVIDER_KEY
    for prefix in (b"", b"x", b"xy"):  # every byte alignment inside a longer base64 text
        encoded = base64.b64encode(prefix + value.encode() + b"tail").decode()
        redacted = redact_text(f"blob={encoded}", values=[value])
        assert REDACTED in redacted
        assert base64.b64encode(value.encode()).decode()[4:20] not in redacted
    assert REDACTED in redact_text(value.encode().hex(), values=[value])
    assert REDACTED in redact_text(base64.urlsafe_b64encode(value.encode()).decode(), values=[value])


def test_overlapping_secrets_become_one_marker() -> None:
    url = f"postgresql://agentz:{samples.DB_PASSWORD}@db/agentz"
    assert redact_text(url, values=[samples.DB_PASSWORD]) == f"postgresql://{REDACTED}@db/agentz"


def test_configured_secret_values_cover_agentz_secrets_and_the_environment(tmp_path: Path) -> None:
    pem = samples.rsa_pem()
    settings = _settings(
        tmp_path, github_webhook_secret=samples.WEBHOOK_SECRET, github_private_key=pem.replace("\n", "\\n"),
        database_url=f"postgresql://agentz:{samples.DB_PASSWORD}@db/agentz",
    )
    environ = {"ANTHROPIC_API_KEY": samples.ANTHROPIC_KEY, "CLAUDE_CODE_OAUTH_TOKEN": "oauth-token-1234567",
               "MY_SERVICE_SECRET": "service-secret-9", "SHORT_TOKEN": "1234567", "PATH": "/usr/bin:/bin",
               "GITHUB_PRIVATE_KEY_PATH": "/etc/agentz/key.pem", "AGENTZ_MODEL_API_KEY": "agentz-local"}
    values = configured_secret_values(settings, environ)
    assert {samples.WEBHOOK_SECRET, samples.DB_PASSWORD, samples.ANTHROPIC_KEY, "oauth-token-1234567",
            "service-secret-9", pem} <= set(values)
    assert set(samples.pem_body_lines(pem)[:-1]) <= set(values)  # each full line: a partial copy is found
    assert not {"1234567", "/usr/bin:/bin", "/etc/agentz/key.pem", "agentz-local"} & set(values)


def test_the_private_key_file_is_read_for_its_values(tmp_path: Path) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_text(samples.ec_pem())
    values = configured_secret_values(_settings(tmp_path, github_private_key_path=key_file), {})
    assert samples.pem_body_lines(samples.ec_pem())[0] in values


def test_secret_matches_describe_the_kind_never_the_value() -> None:
    matches = find_secrets(f"{samples.GITHUB_TOKEN} {samples.AWS_KEY_ID} {samples.PROVIDER_KEY}",
                           values=[samples.PROVIDER_KEY])
    descriptions = [match.description for match in matches]
    assert descriptions == ["a GitHub token (ghs_…)", "an AWS access key id (AKIA…)",
                            "the value of a configured secret"]
    assert not any(samples.GITHUB_TOKEN[4:] in text or "Z7QW" in text for text in descriptions)


_alphabet = st.sampled_from(["ghp_", "sk-", "ant-", "eyJ", ".", "a", "Z", "9", "_", "-", "://", ":", "@", "/",
                             "\n", " ", "=", "-----BEGIN ", "PRIVATE KEY-----", "-----END ", "AKIA"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_alphabet, max_size=200).map("".join), st.sampled_from(samples.SHAPED))
def test_a_shaped_secret_anywhere_in_any_text_never_survives_redaction(noise: str, sample: tuple[str, str]) -> None:
    value = sample[1]
    half = len(noise) // 2
    text = f"{noise[:half]} {value} {noise[half:]}"
    assert value not in redact_text(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(min_size=8, max_size=40))
def test_a_configured_value_never_survives_redaction(text: str, value: str) -> None:
    assert value not in redact_text(text + value + text, values=[value])


@pytest.mark.parametrize("unit", ["eyJ", "ghp_", "sk-", "://a:", "-----BEGIN PRIVATE KEY-----", "a" * 64,
                                  "AKIA", "secret_access_key=", "eyJaaaaaaaaa."])
def test_hostile_repetitions_are_scanned_without_blowing_up(unit: str) -> None:
    # Regexes that backtrack would take minutes here; the scan is linear. (Timing lives in bench/.)
    text = unit * (200_000 // len(unit))
    assert isinstance(redact_text(text), str)
