"""PROVISIONAL local stand-in; replaced by the real module."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentz_app.config import Settings


@dataclass(frozen=True)
class Change:
    path: str
    mode: str
    size: int
    content: bytes | None

@dataclass(frozen=True)
class Violation:
    path: str
    rule: str
    detail: str
    line: int | None = None

@dataclass(frozen=True)
class ContentPolicy:
    max_file_bytes: int
    allow_workflow_changes: bool
    protected_paths: tuple[str, ...]
    secret_values: tuple[str, ...]
    @classmethod
    def from_settings(cls, settings: Settings, *, environ: Mapping[str, str] | None = None) -> ContentPolicy:
        return cls(5_000_000, False, (), ())

def check_changes(changes: Sequence[Change], policy: ContentPolicy) -> list[Violation]:
    out = []
    for c in changes:
        if c.mode == "120000" and c.content is not None and (c.content.startswith(b"/") or b".." in c.content):
            out.append(Violation(c.path, "symlink", "points outside"))
        if c.path.startswith(".github/workflows/"):
            out.append(Violation(c.path, "workflow", "workflow change"))
        if c.content and (b"PRIVATE KEY-----" in c.content or b"ghs_" in c.content):
            out.append(Violation(c.path, "secret", "a secret"))
        if c.mode == "160000":
            out.append(Violation(c.path, "embedded_repository", "gitlink"))
    return out

def violation_annotations(violations: Sequence[Violation]) -> list[dict[str, Any]]:
    return [{"path": v.path, "start_line": v.line or 1, "end_line": v.line or 1, "annotation_level": "failure",
             "title": v.rule, "message": v.detail} for v in violations]

def violations_markdown(violations: Sequence[Violation]) -> str:
    return "\n".join(["| file | rule | detail |", "|---|---|---|", *[f"| `{v.path}` | {v.rule} | {v.detail} |" for v in violations]])
