"""What a secret looks like: one set of patterns and configured values for redaction and the content policy.

Two kinds of knowledge:

- :data:`SECRET_PATTERNS`: secrets recognisable by shape (PEM private keys, GitHub tokens,
  provider API keys, AWS keys, JWTs, credentials in URLs);
- configured values (:func:`configured_secret_values`): the webhook secret, the App's private
  key and each line of it, the database password and every ``*_API_KEY``/``*_TOKEN``/
  ``*_SECRET`` variable of the environment. They are also looked for base64-encoded (at each
  of the three byte alignments, so a value inside a longer base64 text is found) and hex-encoded.

Every pattern is linear-time on hostile text: each starts with a literal prefix that may
not follow a character of the run it introduces, so a run is scanned from its start only, and
the PEM block end is searched once per block (:func:`find_secrets`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from agentz_app.config import SECRET_VARIABLES, Settings
from agentz_app.errors import ConfigError

REDACTED = "[redacted]"

# Environment variables whose values count as secrets (name suffixes, upper-cased).
SECRET_NAME_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD", "_PRIVATE_KEY", "_SECRET_ACCESS_KEY")
MIN_SECRET_LENGTH = 8
# Well-known placeholder values that are not secrets (the local model endpoint's default key).
PUBLIC_VALUES = frozenset({"agentz-local"})
_MIN_PEM_LINE = 16


@dataclass(frozen=True)
class SecretPattern:
    """A secret recognisable by its shape."""

    kind: str
    description: str  # names the kind, never the value: "a GitHub token (ghs_…)"
    regex: re.Pattern[str]
    in_policy: bool = True  # False: redacted from output, but legitimate in a repository (example URLs)
    accept: Callable[[str], bool] | None = None  # a second look at a match (entropy of generic keys)


@dataclass(frozen=True)
class SecretMatch:
    """One secret found in a text: where, and a description that never contains it."""

    kind: str
    description: str
    start: int
    end: int
    in_policy: bool = True


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _looks_random(text: str) -> bool:
    body = text[3:]
    return any(c.isdigit() for c in body) and any(c.isalpha() for c in body) and _entropy(body) >= 3.5


_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=\r\n]*")
_TOKEN_CHARS = "A-Za-z0-9_"
_KEY_CHARS = "A-Za-z0-9_-"

# Matches the BEGIN line only; :func:`find_secrets` extends each match to the whole block.
PRIVATE_KEY = SecretPattern("private_key", "a PEM private key", _PEM_BEGIN)

SECRET_PATTERNS: tuple[SecretPattern, ...] = (
    PRIVATE_KEY,
    SecretPattern("github_token", "a GitHub token", re.compile(
        rf"(?<![{_TOKEN_CHARS}])(?:gh[pousr]_[{_TOKEN_CHARS}]{{16,}}|github_pat_[{_TOKEN_CHARS}]{{20,}})")),
    SecretPattern("anthropic_key", "an Anthropic API key (sk-ant-…)",
                  re.compile(rf"(?<![{_KEY_CHARS}])sk-ant-[{_KEY_CHARS}]{{20,}}")),
    SecretPattern("openai_key", "an OpenAI project key (sk-proj-…)",
                  re.compile(rf"(?<![{_KEY_CHARS}])sk-proj-[{_KEY_CHARS}]{{20,}}")),
    SecretPattern("api_key", "an API key (sk-…)",
                  re.compile(rf"(?<![{_KEY_CHARS}])sk-(?!ant-|proj-)[{_KEY_CHARS}]{{32,}}"), accept=_looks_random),
    SecretPattern("aws_access_key_id", "an AWS access key id",
                  re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")),
    SecretPattern("aws_secret_key", "an AWS secret access key", re.compile(
        r"(?i)(?<![a-z0-9])(?:aws_?)?secret_?access_?key[\"']?[ \t]{0,20}[:=][ \t]{0,20}[\"']?"
        r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])")),
    SecretPattern("jwt", "a JSON Web Token", re.compile(
        rf"(?<![{_KEY_CHARS}])eyJ[{_KEY_CHARS}]{{8,}}\.[{_KEY_CHARS}]{{8,}}\.[{_KEY_CHARS}]{{8,}}"), in_policy=False),
    SecretPattern("url_credentials", "a password in a URL",
                  re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+(?=@)"), in_policy=False),
    SecretPattern("access_token", "a git access token", re.compile(r"x-access-token:[^@\s]+"), in_policy=False),
)


def _describe(pattern: SecretPattern, value: str) -> str:
    if pattern.kind == "github_token":
        prefix = "github_pat_" if value.startswith("github_pat_") else value[:4]
        return f"a GitHub token ({prefix}…)"
    if pattern.kind == "aws_access_key_id":
        return f"an AWS access key id ({value[:4]}…)"
    return pattern.description


def _pem_blocks(text: str) -> Iterator[SecretMatch]:
    """Whole private-key blocks; a block without its END line runs to the end of its base64 body."""
    position = 0
    end_missing = False
    while (begin := _PEM_BEGIN.search(text, position)) is not None:
        end = None if end_missing else _PEM_END.search(text, begin.end())
        if end is None:
            end_missing = True  # no END after here: never search for one again (linear time)
            body = _PEM_BODY.match(text, begin.end())
            stop = body.end() if body else begin.end()
        else:
            stop = end.end()
        yield SecretMatch(PRIVATE_KEY.kind, PRIVATE_KEY.description, begin.start(), stop)
        position = max(stop, begin.end())


@dataclass(frozen=True)
class _Needle:
    text: str
    description: str


def _base64_fragments(value: bytes) -> list[str]:
    """The base64 text of ``value`` as it appears inside any longer base64 text, at all three alignments."""
    fragments = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + value).decode().rstrip("=")
        skip = (4 * offset + 2) // 3  # characters that also encode the padding bytes in front
        total = offset + len(value)
        cut = len(encoded) - (1 if total % 3 else 0)  # the last character mixes in bits that follow
        fragments.append(encoded[skip:cut])
    return fragments


@functools.lru_cache(maxsize=16)
def _needles(values: tuple[str, ...]) -> tuple[_Needle, ...]:
    """Each value with its encodings, longest first; memoised because log sinks call this per line."""
    found: dict[str, str] = {}
    for value in values:
        if len(value) < MIN_SECRET_LENGTH or value in PUBLIC_VALUES:
            continue
        found.setdefault(value, "the value of a configured secret")
        raw = value.encode()
        for fragment in _base64_fragments(raw):
            for variant in (fragment, fragment.replace("+", "-").replace("/", "_")):
                if len(variant) >= MIN_SECRET_LENGTH:
                    found.setdefault(variant, "the value of a configured secret, base64-encoded")
        found.setdefault(raw.hex(), "the value of a configured secret, hex-encoded")
        found.setdefault(raw.hex().upper(), "the value of a configured secret, hex-encoded")
    ordered = sorted(found.items(), key=lambda item: len(item[0]), reverse=True)
    return tuple(_Needle(text, description) for text, description in ordered)


def _value_matches(text: str, needles: Sequence[_Needle]) -> Iterator[SecretMatch]:
    for needle in needles:
        start = text.find(needle.text)
        while start >= 0:
            yield SecretMatch("configured_secret", needle.description, start, start + len(needle.text))
            start = text.find(needle.text, start + len(needle.text))


def find_secrets(text: str, *, values: Sequence[str] = ()) -> list[SecretMatch]:
    """Every secret in ``text`` (by shape, and the exact ``values`` with their encodings), in text order."""
    matches = list(_pem_blocks(text))
    for pattern in SECRET_PATTERNS:
        if pattern is PRIVATE_KEY:
            continue
        for found in pattern.regex.finditer(text):
            if pattern.accept is None or pattern.accept(found.group()):
                matches.append(SecretMatch(pattern.kind, _describe(pattern, found.group()), found.start(),
                                           found.end(), pattern.in_policy))
    matches.extend(_value_matches(text, _needles(tuple(values))))
    matches.sort(key=lambda match: (match.start, -match.end))
    return matches


def redact_text(text: str, *, values: Sequence[str] = ()) -> str:
    """``text`` with every secret (see :func:`find_secrets`) replaced by ``[redacted]``."""
    if not text:
        return text
    matches = find_secrets(text, values=values)
    if not matches:
        return text
    pieces: list[str] = []
    position = 0  # the end of the last redacted span
    for match in matches:
        if match.end <= position:
            continue  # inside a span already redacted
        if pieces and match.start < position:
            position = match.end  # overlaps the span just redacted: extend it
            continue
        pieces += [text[position : match.start], REDACTED]
        position = match.end
    pieces.append(text[position:])
    return "".join(pieces)


def redact_key_lines(line: str, inside: bool) -> tuple[str, bool]:
    """Blank the lines of a private key printed over several lines; return the line and the new ``inside``.

    ``inside`` says whether an earlier line opened a key block that is not closed yet. Feed
    the lines of one stream in order; the BEGIN line itself is left to :func:`redact_text`.
    """
    if inside:
        end = _PEM_END.search(line)
        if end is None:
            return REDACTED, True
        line, inside = REDACTED + line[end.end():], False
    last_begin = None
    for last_begin in _PEM_BEGIN.finditer(line):  # noqa: B007 - the last one is wanted
        pass
    if last_begin is not None and _PEM_END.search(line, last_begin.end()) is None:
        inside = True
    return line, inside


@dataclass(frozen=True)
class Redactor:
    """A callable redacting one fixed set of configured values (and every pattern)."""

    values: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> Redactor:
        """A redactor for this process's configured secrets."""
        return cls(configured_secret_values(settings, environ))

    def __call__(self, text: str) -> str:
        return redact_text(text, values=self.values)


def _pem_values(pem: str) -> list[str]:
    lines = [line.strip() for line in pem.strip().splitlines()]
    body = [line for line in lines if line and not line.startswith("-----") and ":" not in line]
    values = [pem, pem.strip(), "".join(body)]
    values += [line for line in body if len(line) >= _MIN_PEM_LINE]
    return values


def _database_password(url: str) -> list[str]:
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def _secret_variable(name: str) -> bool:
    upper = name.upper()
    if upper.endswith("_PATH") or upper == "DATABASE_URL":
        return False
    return upper in SECRET_VARIABLES or upper.endswith(SECRET_NAME_SUFFIXES)


def configured_secret_values(settings: Settings, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The exact values of every configured secret: Agent-Z's own and the environment's.

    The webhook secret; the App private key (whole, its base64 body and each line of it, so a
    partial copy is found too; read from ``GITHUB_PRIVATE_KEY_PATH`` when set); the password in
    ``DATABASE_URL``; and every variable of ``environ`` (default: this process's environment)
    named like a secret (``*_API_KEY``, ``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``, GitHub token
    variables) whose value has at least 8 characters.
    """
    environ = os.environ if environ is None else environ
    values: list[str] = []
    if settings.github_webhook_secret is not None:
        values.append(settings.github_webhook_secret.get_secret_value())
    if settings.github_private_key is not None:
        values.append(settings.github_private_key.get_secret_value())
    if settings.github_private_key is not None or settings.github_private_key_path is not None:
        with contextlib.suppress(ConfigError):  # an unreadable key file fails elsewhere, with its own message
            values += _pem_values(settings.private_key_pem())
    values += _database_password(settings.database_url)
    values += [value for name, value in environ.items() if _secret_variable(name)]
    values += [value for name, value in settings.agent_variables().items() if _secret_variable(name)]  # from .env
    unique = dict.fromkeys(v for v in values if len(v) >= MIN_SECRET_LENGTH and v not in PUBLIC_VALUES)
    return tuple(unique)
