from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agentz_app.github.signatures import sign, verify_signature

SECRET = b"It's a Secret to Everybody"
BODY = b"Hello, World!"
EXPECTED = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_signature_matches_githubs_documented_test_vector() -> None:
    assert sign(SECRET, BODY) == EXPECTED
    assert verify_signature(SECRET, BODY, EXPECTED)


def test_uppercase_hex_and_surrounding_whitespace_are_accepted() -> None:
    assert verify_signature(SECRET, BODY, " sha256=" + EXPECTED.removeprefix("sha256=").upper() + " ")


def test_tampered_body_is_rejected() -> None:
    assert not verify_signature(SECRET, b"Hello, World?", EXPECTED)
    assert not verify_signature(SECRET, BODY + b" ", EXPECTED)


def test_wrong_secret_is_rejected() -> None:
    assert not verify_signature(b"another secret", BODY, EXPECTED)


def test_missing_signature_is_rejected() -> None:
    assert not verify_signature(SECRET, BODY, None)
    assert not verify_signature(SECRET, BODY, "")


def test_sha1_prefix_is_rejected_even_with_the_right_digest() -> None:
    digest = EXPECTED.removeprefix("sha256=")
    assert not verify_signature(SECRET, BODY, "sha1=" + digest)
    assert not verify_signature(SECRET, BODY, digest)


def test_truncated_or_extended_signature_is_rejected() -> None:
    assert not verify_signature(SECRET, BODY, EXPECTED[:-1])
    assert not verify_signature(SECRET, BODY, EXPECTED[:20])
    assert not verify_signature(SECRET, BODY, EXPECTED + "0")


def test_empty_secret_never_verifies() -> None:
    assert not verify_signature(b"", BODY, sign(b"", BODY))


@given(secret=st.binary(min_size=1, max_size=64), body=st.binary(max_size=512), flip=st.integers(min_value=0))
def test_any_single_byte_change_breaks_the_signature(secret: bytes, body: bytes, flip: int) -> None:
    header = sign(secret, body)
    assert verify_signature(secret, body, header)
    if body:
        index = flip % len(body)
        tampered = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
        assert not verify_signature(secret, tampered, header)
