"""Secret-shaped sample values for tests, assembled at run time so no scanner mistakes the source for a leak."""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

GITHUB_TOKEN = "ghs_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
GITHUB_PAT = "github_" + "pat_" + "11ABCDEFG0" + "x9Y8z7W6v5U4t3S2r1Q0p9O8n7M6l5K4j3I2h1G0f9E8d7C6b5A4"
PERSONAL_TOKEN = "ghp_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8"
ANTHROPIC_KEY = "sk-" + "ant-api03-" + "Q9w8E7r6T5y4U3i2O1p0A9s8D7f6G5h4J3k2L1z0X9c8V7b6N5m4"
OPENAI_PROJECT_KEY = "sk-" + "proj-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0"
OPENAI_KEY = "sk-" + "T3BlbkFJ7q2Xv9LmN4pR8sW1yZ6cD0eF5gH3jK"
AWS_KEY_ID = "AKIA" + "Z7QW3ERT5YUI9OPL"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYzX8mQ2vL4n"  # 40 characters
JWT = "eyJhbGciOiJSUzI1NiJ9" + ".eyJpc3MiOiIxMjM0NSJ9" + ".c2lnbmF0dXJlLXBhcnQtb25l"
WEBHOOK_SECRET = "whsec-4f9d2c71e0b3a8c6d5e4f3a2b1c0d9e8"
DB_PASSWORD = "pg-Pa55word-7c1e9b"
PROVIDER_KEY = "prov-" + "9f8e7d6c5b4a39281706f5e4d3c2b1a0"

# Shapes recognised without configuration: (name, value).
SHAPED = [
    ("github installation token", GITHUB_TOKEN),
    ("github personal access token", PERSONAL_TOKEN),
    ("fine-grained github token", GITHUB_PAT),
    ("anthropic key", ANTHROPIC_KEY),
    ("openai project key", OPENAI_PROJECT_KEY),
    ("openai key", OPENAI_KEY),
    ("aws access key id", AWS_KEY_ID),
]


@functools.cache
def rsa_pem() -> str:
    """A fresh RSA private key in PKCS#8 PEM (cached: generating one takes a moment)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@functools.cache
def ec_pem() -> str:
    """A fresh EC private key in the traditional ``EC PRIVATE KEY`` format."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


@functools.cache
def openssh_pem() -> str:
    """A fresh key in OpenSSH's private key format."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


def pem_body_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM block."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]
