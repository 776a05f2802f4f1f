"""The content policy: what an agent's change may contain before trusted code commits it.

Pure and deterministic: trusted code reads the changed entries from git (path, mode, size
and, for small files, the blob) and passes them in as :class:`Change` values; nothing here
touches git, the disk or the network. A change is refused for:

- ``secret``: a PEM private key, a GitHub token, a provider API key, an AWS key, or the
  exact value (also base64- or hex-encoded) of a configured secret, in text or binary files;
- ``symlink``: a symlink whose target is absolute or climbs above the repository root
  (judged from the link's own directory), or points into ``.git``;
- ``workflow``: any change under ``.github/workflows/`` unless ``ALLOW_WORKFLOW_CHANGES``;
- ``size``: a file larger than ``MAX_FILE_BYTES``;
- ``protected_path``: a path matching a ``PROTECTED_PATHS`` glob (see :func:`path_matches`);
- ``embedded_repository``: a gitlink (mode 160000), i.e. a nested repository or submodule.

Deleting a workflow or protected file counts as changing it. Scanning is linear in the size
of the content (see :mod:`agentz_app.secrets`).
"""

from __future__ import annotations

import fnmatch
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentz_app.config import Settings
from agentz_app.repo_config import RepoConfig
from agentz_app.reporting.checks import MAX_SUMMARY, MAX_TITLE, truncate
from agentz_app.secrets import configured_secret_values, find_secrets, redact_text

RULES = ("secret", "symlink", "workflow", "size", "protected_path", "embedded_repository")
WORKFLOWS_DIR = ".github/workflows"
MODE_SYMLINK = "120000"
MODE_GITLINK = "160000"
MODE_DELETED = "000000"
MAX_SECRETS_PER_FILE = 20
_MAX_DETAIL = 500


@dataclass(frozen=True)
class Change:
    """One path changed by the agent, read from git by trusted code."""

    path: str  # repository-relative POSIX path
    mode: str  # git mode of the new entry: 100644, 100755, 120000 (symlink), 160000 (gitlink), 000000 (deleted)
    size: int  # size of the new blob in bytes (0 when deleted)
    content: bytes | None  # the blob when size <= max_file_bytes, else None; for a symlink, its target

    @property
    def deleted(self) -> bool:
        return self.mode == MODE_DELETED


@dataclass(frozen=True)
class Violation:
    """One reason a change is refused; ``detail`` never contains a secret."""

    path: str
    rule: str  # one of RULES
    detail: str
    line: int | None = None


@dataclass(frozen=True)
class ContentPolicy:
    """The limits a change is checked against."""

    max_file_bytes: int
    allow_workflow_changes: bool
    protected_paths: tuple[str, ...]  # globs, see path_matches
    secret_values: tuple[str, ...]  # exact values of configured secrets

    @classmethod
    def from_settings(
        cls, settings: Settings, *, environ: Mapping[str, str] | None = None, repo: RepoConfig | None = None
    ) -> ContentPolicy:
        """The policy configured by ``ALLOW_WORKFLOW_CHANGES``, ``MAX_FILE_BYTES``, ``PROTECTED_PATHS``.

        ``environ`` (default: this process's environment) supplies the provider keys and
        other ``*_API_KEY``/``*_TOKEN``/``*_SECRET`` values that must not leave in a change.
        ``repo`` (the repository's ``.github/agent-z.yml``) can only make the policy stricter:
        its protected paths are added, and it can forbid workflow changes but never allow them
        when the host forbids them.
        """
        allow_workflows = settings.allow_workflow_changes and (repo is None or repo.allow_workflow_changes
                                                               is not False)
        protected = [*settings.protected_paths, *(repo.protected_paths if repo is not None else ())]
        return cls(
            max_file_bytes=settings.max_file_bytes,
            allow_workflow_changes=allow_workflows,
            protected_paths=tuple(dict.fromkeys(protected)),
            secret_values=configured_secret_values(settings, os.environ if environ is None else environ),
        )


def check_changes(changes: Sequence[Change], policy: ContentPolicy) -> list[Violation]:
    """Every violation in ``changes``, in input order; an empty list means the change may be committed."""
    violations: list[Violation] = []
    for change in changes:
        violations += _check_one(change, policy)
    return violations


def _check_one(change: Change, policy: ContentPolicy) -> list[Violation]:
    found: list[Violation] = []
    path = change.path
    verb = "deletes" if change.deleted else "changes"
    if is_workflow_path(path) and not policy.allow_workflow_changes:
        found.append(Violation(path, "workflow", f"{verb} a GitHub Actions workflow; ALLOW_WORKFLOW_CHANGES is off"))
    for pattern in policy.protected_paths:
        if path_matches(pattern, path):
            found.append(Violation(path, "protected_path", f"{verb} a protected path (PROTECTED_PATHS: {pattern})"))
            break
    if change.deleted:
        return found
    if change.mode == MODE_GITLINK:
        found.append(Violation(path, "embedded_repository",
                               "adds an embedded repository (gitlink); submodules are not accepted from agents"))
        return found
    if change.size > policy.max_file_bytes:
        found.append(Violation(path, "size", f"{change.size:,} bytes; the limit (MAX_FILE_BYTES) is "
                                             f"{policy.max_file_bytes:,}"))
    if change.mode == MODE_SYMLINK:
        reason = ("is a symlink whose target was not read" if change.content is None
                  else symlink_escape(path, change.content.decode("utf-8", errors="replace")))
        if reason is not None:
            found.append(Violation(path, "symlink", reason))
    if change.content is not None:
        found += _secret_violations(path, change.content, policy.secret_values)
    return found


def _secret_violations(path: str, content: bytes, values: Sequence[str]) -> list[Violation]:
    text = content.decode("latin-1")  # every byte maps to one character: binary content is scanned too
    matches = [match for match in find_secrets(text, values=_as_latin1(values)) if match.in_policy]
    if not matches:
        return []
    found: list[Violation] = []
    seen: set[tuple[str, int]] = set()
    line, counted, covered = 1, 0, 0
    for match in matches:  # in text order: count the newlines between matches once, linear overall
        if match.end <= covered:
            continue  # inside a secret already reported (a configured value that is also a token)
        covered = match.end
        line += text.count("\n", counted, match.start)
        counted = match.start
        if (match.description, line) in seen:
            continue
        seen.add((match.description, line))
        if len(found) == MAX_SECRETS_PER_FILE:
            found.append(Violation(path, "secret", "more secrets in this file are not listed"))
            break
        found.append(Violation(path, "secret", f"contains {match.description}", line))
    return found


def _as_latin1(values: Sequence[str]) -> tuple[str, ...]:
    """Configured values as they appear in content decoded as latin-1 (their UTF-8 bytes)."""
    return tuple(dict.fromkeys(value.encode("utf-8").decode("latin-1") for value in values))


def is_workflow_path(path: str) -> bool:
    """True for ``.github/workflows`` itself and anything under it."""
    return path == WORKFLOWS_DIR or path.startswith(WORKFLOWS_DIR + "/")


def symlink_escape(path: str, target: str) -> str | None:
    """Why a symlink at ``path`` pointing to ``target`` leaves the repository, or None when it stays inside."""
    if not target:
        return "is a symlink with an empty target"
    if target.startswith(("/", "\\")) or (len(target) > 1 and target[1] == ":" and target[0].isalpha()):
        return "is a symlink to an absolute path"
    parts = [part for part in path.split("/")[:-1] if part not in ("", ".")]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return "is a symlink that climbs above the repository root"
            parts.pop()
        else:
            parts.append(part)
    if parts and parts[0] == ".git":
        return "is a symlink into the repository's .git directory"
    return None


def path_matches(pattern: str, path: str) -> bool:
    """True when repository path ``path`` matches glob ``pattern`` (how PROTECTED_PATHS is read).

    ``*`` and ``?`` match within one path segment, ``[...]`` a character class, ``**`` any
    number of whole segments (none included). A pattern without ``/`` matches a file or
    directory of that name at any depth (``*.pem``, ``secrets``), like ``.gitignore``; with
    a ``/`` (a leading one is allowed) it is matched from the repository root. A pattern that
    matches a directory protects everything under it (``deploy`` and ``deploy/**`` alike).
    Matching is case-sensitive and takes time proportional to path segments times pattern segments.
    """
    path_parts = [part for part in path.split("/") if part]
    anchored = "/" in pattern.rstrip("/")
    pattern_parts = [part for part in pattern.split("/") if part]
    if not pattern_parts:
        return False
    if not anchored:
        return any(fnmatch.fnmatchcase(part, pattern_parts[0]) for part in path_parts)
    return _match_segments(pattern_parts, path_parts)


def _match_segments(pattern: Sequence[str], path: Sequence[str]) -> bool:
    # reachable[j]: the pattern so far matches path[:j]. A match of a prefix of the path
    # protects everything under it (a matched directory), so any j counts at the end.
    reachable = [True] + [False] * len(path)
    for segment in pattern:
        if segment == "**":
            first = reachable.index(True) if True in reachable else len(reachable)
            reachable = [j >= first for j in range(len(reachable))]
            continue
        reachable = [False] + [reachable[j] and fnmatch.fnmatchcase(path[j], segment) for j in range(len(path))]
    return reachable[-1] if pattern[-1] == "**" else any(reachable[1:])


def violation_annotations(violations: Sequence[Violation]) -> list[dict[str, Any]]:
    """Violations as check-run annotations (failure level; send ≤50 per request, see ``checks.chunks``)."""
    notes = []
    for violation in violations:
        line = violation.line or 1
        notes.append({
            "path": redact_text(violation.path),
            "start_line": line,
            "end_line": line,
            "annotation_level": "failure",
            "title": truncate(f"Content policy: {violation.rule}", MAX_TITLE),
            "message": truncate(redact_text(violation.detail), 64_000),
        })
    return notes


def _cell(text: str) -> str:
    flat = " ".join(redact_text(text).split())[:_MAX_DETAIL]
    return html.escape(flat, quote=True).replace("|", "&#124;")


def violations_markdown(violations: Sequence[Violation]) -> str:
    """A Markdown table (file, rule, detail) for the status comment or check summary.

    Paths come from the agent: they are HTML-escaped inside ``<code>`` so that no path can
    break the table, mention anyone or inject markup.
    """
    if not violations:
        return "No content policy violations."
    rows = ["| File | Rule | Detail |", "| --- | --- | --- |"]
    for violation in violations:
        where = _cell(violation.path) + (f":{violation.line}" if violation.line else "")
        rows.append(f"| <code>{where}</code> | {violation.rule} | {_cell(violation.detail)} |")
    count = len(violations)
    heading = f"**The change was refused by the content policy** ({count} violation{'s' if count != 1 else ''}):"
    return truncate("\n".join([heading, "", *rows]), MAX_SUMMARY)
