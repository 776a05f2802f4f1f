"""Per-repository configuration: ``.github/agent-z.yml`` on the default branch.

Whoever can push to the default branch writes this file, so it is untrusted input to the
host: it is parsed with ``yaml.safe_load`` after size, depth, node-count and alias checks,
validated by a pydantic model (:class:`RepoConfig`, whose JSON schema ``agentz config
schema`` prints), and merged over the host's settings by :func:`effective_settings`
without ever loosening a host limit (budget, parallelism; the content policy is tightened
in :meth:`workers.content_policy.ContentPolicy.from_settings`). An invalid file is
reported with line numbers and the host's settings apply.

The parsed file is stored per repository (:class:`~agentz_app.store.models.RepoConfigRow`)
with the git object id of the file (its ETag) and the commit it came from, so every role
of every process reads the same configuration.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from agentz_app.config import Settings
from agentz_app.errors import AgentZError
from agentz_app.secrets import redact_text
from agentz_app.store.db import Database
from agentz_app.store.models import RepoConfigRow, now

CONFIG_PATH = ".github/agent-z.yml"
MAX_CONFIG_BYTES = 64 * 1024
MAX_DEPTH = 12
MAX_NODES = 5_000
CHECK_NAME = "Agent-Z / config"

RepoBackend = Literal["claude", "codex", "opencode"]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
ShellCommand = Annotated[str, StringConstraints(min_length=1, max_length=4000)]


def _check_glob(pattern: str) -> str:
    if ".." in pattern.split("/") or "\\" in pattern:
        raise ValueError(f"{pattern!r}: patterns are repository-relative POSIX globs without '..'")
    return pattern


PathGlob = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_check_glob)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Backends(_Strict):
    """The agent CLI per role; unset roles use ``default``, then the host's settings."""

    default: RepoBackend | None = None
    task_lead: RepoBackend | None = Field(default=None, description="Plans and develops the change.")
    reviewer: RepoBackend | None = None
    scheduler: RepoBackend | None = None


class Labels(_Strict):
    """Labels that steer runs in this repository (unset: the host's)."""

    trigger: Label | None = Field(default=None, description="TRIGGER_LABEL")
    eligible: list[Label] | None = Field(default=None, max_length=50, description="SCHEDULER_ELIGIBLE_LABELS")
    block: list[Label] | None = Field(default=None, max_length=50, description="SCHEDULER_BLOCK_LABELS")
    skip: list[Label] | None = Field(default=None, max_length=50, description="SKIP_LABELS")


class RepoConfig(_Strict):
    """The contents of ``.github/agent-z.yml``; every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Agent-Z repository configuration")

    version: Literal[1] = 1
    backends: Backends = Field(default_factory=Backends)
    labels: Labels = Field(default_factory=Labels)
    parallelism: int | None = Field(default=None, ge=1, le=100,
                                    description="Runs at once in this repository (at most MAX_PARALLEL_PER_REPO).")
    setup: list[ShellCommand] = Field(default_factory=list, max_length=20,
                                      description="Shell commands run in the agent's sandbox before the first "
                                                  "developer call (install dependencies).")
    test: ShellCommand | None = Field(default=None, description="Shell command the developer's change must pass "
                                                                 "before it is submitted.")
    protected_paths: list[PathGlob] = Field(default_factory=list, max_length=200,
                                            description="Added to PROTECTED_PATHS.")
    allow_workflow_changes: bool | None = Field(default=None, description="false forbids workflow changes; true "
                                                                          "cannot allow what the host forbids.")
    max_cost_per_run_usd: float | None = Field(default=None, gt=0, description="At most MAX_COST_PER_RUN_USD.")


def json_schema() -> dict[str, Any]:
    """The JSON schema of ``.github/agent-z.yml``, derived from :class:`RepoConfig`."""
    schema = RepoConfig.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# Parsing ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    """One reason the file is invalid; ``line`` is 1-based (None: the whole file)."""

    line: int | None
    message: str
    field: str = ""

    def __str__(self) -> str:
        where = f"{CONFIG_PATH}:{self.line}" if self.line else CONFIG_PATH
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"


class InvalidRepoConfig(AgentZError):
    """The file is not a valid configuration; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


def parse_config(data: bytes | str) -> RepoConfig:
    """Parse and validate the file's content; raise InvalidRepoConfig with line-numbered problems."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_CONFIG_BYTES:
        raise InvalidRepoConfig([ConfigProblem(None, f"the file is {len(raw):,} bytes; the limit is "
                                                     f"{MAX_CONFIG_BYTES:,}")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRepoConfig([ConfigProblem(None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    try:
        _check_shape(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise InvalidRepoConfig([ConfigProblem(mark.line + 1 if mark else None,
                                               str(exc.problem or exc.context or "invalid YAML"))]) from None
    except yaml.YAMLError as exc:
        raise InvalidRepoConfig([ConfigProblem(None, f"invalid YAML: {exc}")]) from None
    if document is None:
        return RepoConfig()
    if not isinstance(document, dict):
        raise InvalidRepoConfig([ConfigProblem(1, "the file must be a mapping of settings")])
    try:
        return RepoConfig.model_validate(document)
    except ValidationError as exc:
        problems = [ConfigProblem(_line_of(node, error["loc"]), str(error["msg"]).removeprefix("Value error, "),
                                  ".".join(str(part) for part in error["loc"]))
                    for error in exc.errors()]
        raise InvalidRepoConfig(sorted(problems, key=lambda problem: problem.line or 0)) from None


def _refuse(event: yaml.Event, message: str) -> InvalidRepoConfig:
    line = getattr(event.start_mark, "line", None)
    return InvalidRepoConfig([ConfigProblem(line + 1 if isinstance(line, int) else None, message)])


def _check_shape(text: str) -> None:
    """Refuse anchors and aliases, nesting deeper than MAX_DEPTH and more than MAX_NODES nodes.

    Runs over the parser's event stream (no recursion, nothing built), so a hostile file costs
    time linear in its size before anything is composed.
    """
    depth = nodes = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _refuse(event, "anchors and aliases are not accepted")
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_NODES:
                raise _refuse(event, f"more than {MAX_NODES} values")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _refuse(event, f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.DocumentStartEvent) and nodes:
            raise _refuse(event, "only one YAML document is accepted")


def _line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the entry at pydantic location ``loc`` (the deepest part that exists)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            entry = next(((key, value) for key, value in node.value
                          if isinstance(key, yaml.ScalarNode) and key.value == str(part)), None)
            if entry is None:
                return line
            key, node = entry
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# Applying ---------------------------------------------------------------------


def effective_settings(settings: Settings, config: RepoConfig | None) -> Settings:
    """The host's settings with the repository's choices laid on; host limits are never loosened.

    Backends and labels are the repository's to choose; parallelism and the budget can only
    go down. The content policy is merged by ``ContentPolicy.from_settings(..., repo=config)``.
    """
    if config is None:
        return settings
    update: dict[str, Any] = {}
    chosen = config.backends
    if chosen.default is not None:
        update["default_backend"] = chosen.default
    for role in ("task_lead", "reviewer", "scheduler"):
        specific = getattr(chosen, role) or chosen.default
        if specific is not None:
            update[f"{role}_backend"] = specific
    labels = config.labels
    if labels.trigger is not None:
        update["trigger_label"] = labels.trigger
    for name, field in (("eligible", "scheduler_eligible_labels"), ("block", "scheduler_block_labels"),
                        ("skip", "skip_labels")):
        value = getattr(labels, name)
        if value is not None:
            update[field] = list(value)
    if config.parallelism is not None:
        update["max_parallel_per_repo"] = min(config.parallelism, settings.per_repo_limit)
    if config.max_cost_per_run_usd is not None:
        host = settings.max_cost_per_run_usd
        update["max_cost_per_run_usd"] = config.max_cost_per_run_usd if host is None else min(
            host, config.max_cost_per_run_usd)
    return settings.model_copy(update=update)


# Storage ----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredConfig:
    """The configuration last read for a repository."""

    repo: str
    commit_sha: str
    blob_sha: str | None  # the file's git object id (its ETag); None when the file is absent
    config: RepoConfig | None  # None when absent or invalid: the host's settings apply
    problems: tuple[ConfigProblem, ...]
    reported_sha: str | None  # the commit whose failing config check was posted

    @property
    def valid(self) -> bool:
        return not self.problems


def _stored(row: RepoConfigRow) -> StoredConfig:
    config = RepoConfig.model_validate(row.config) if row.config is not None else None
    problems = tuple(ConfigProblem(p.get("line"), str(p.get("message", "")), str(p.get("field", "")))
                     for p in row.problems or [])
    return StoredConfig(row.repo, row.commit_sha, row.blob_sha, config, problems, row.reported_sha)


def stored_config(db: Database, repo: str) -> StoredConfig | None:
    """The configuration stored for ``repo``, or None when it was never read."""
    with db.read() as session:
        row = session.get(RepoConfigRow, repo)
        return _stored(row) if row is not None else None


def settings_for(db: Database, settings: Settings, repo: str) -> Settings:
    """The settings for ``repo``: the host's with its stored, valid configuration applied."""
    stored = stored_config(db, repo) if repo else None
    return effective_settings(settings, stored.config if stored is not None else None)


def save_config(db: Database, repo: str, *, commit_sha: str, blob_sha: str | None, config: RepoConfig | None,
                problems: Sequence[ConfigProblem] = (), reported_sha: str | None = None,
                keep_reported: bool = True) -> StoredConfig:
    """Store what was read for ``repo`` (one row per repository) and return it."""
    with db.begin() as session:
        row = session.get(RepoConfigRow, repo)
        if row is None:
            row = RepoConfigRow(repo=repo)
            session.add(row)
        row.commit_sha = commit_sha
        row.blob_sha = blob_sha
        row.config = config.model_dump(mode="json") if config is not None else None
        row.problems = [{"line": p.line, "message": p.message, "field": p.field} for p in problems]
        if not keep_reported or reported_sha is not None:
            row.reported_sha = reported_sha
        row.updated_at = now()
        session.flush()
        return _stored(row)


def config_from(content: bytes | None) -> tuple[RepoConfig | None, list[ConfigProblem]]:
    """(config, problems) for the file's content (None: no file, the host's settings)."""
    if content is None:
        return None, []
    try:
        return parse_config(content), []
    except InvalidRepoConfig as exc:
        return None, exc.problems


# The config check run -----------------------------------------------------------


def problems_markdown(problems: Sequence[ConfigProblem]) -> str:
    """The problems as a Markdown list (redacted, each line cut), for a check summary."""
    lines = [f"`{CONFIG_PATH}` is invalid; Agent-Z uses the host's settings for this repository until it "
             "is fixed. Validate it locally with `agentz config check .github/agent-z.yml`.", ""]
    for problem in problems[:100]:
        lines.append("- " + _clean(str(problem)))
    return "\n".join(lines)


def _clean(text: str, limit: int = 500) -> str:
    return " ".join(redact_text(text).replace("`", "'").split())[:limit]


def config_check_payload(commit_sha: str, problems: Sequence[ConfigProblem]) -> dict[str, Any]:
    """The ``Agent-Z / config`` check run for ``commit_sha``: failure with annotations, or success."""
    if not problems:
        output: dict[str, Any] = {"title": "Configuration valid", "summary": f"`{CONFIG_PATH}` is valid."}
        conclusion = "success"
    else:
        count = len(problems)
        output = {
            "title": f"{CONFIG_PATH}: {count} problem{'s' if count != 1 else ''}",
            "summary": problems_markdown(problems)[:60_000],
            "annotations": [
                {"path": CONFIG_PATH, "start_line": p.line or 1, "end_line": p.line or 1,
                 "annotation_level": "failure", "title": "Invalid configuration",
                 "message": _clean(f"{p.field + ': ' if p.field else ''}{p.message}", 4000)}
                for p in problems[:50]
            ],
        }
        conclusion = "failure"
    return {"name": CHECK_NAME, "head_sha": commit_sha, "status": "completed", "conclusion": conclusion,
            "external_id": f"agent-z:config:{commit_sha}", "output": output}


def schema_text() -> str:
    """The JSON schema as indented text."""
    return json.dumps(json_schema(), indent=2, sort_keys=True)
