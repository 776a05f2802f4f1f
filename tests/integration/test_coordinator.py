"""The coordinator's steps are idempotent: repeating a submit opens one PR, one comment, no duplicate checks."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from agentz_app.config import Settings
from agentz_app.domain.plans import Finding
from agentz_app.errors import GitHubError
from agentz_app.reporting.comments import StatusView, status_marker
from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from agentz_app.store.models import Run
from tests.db_templates import copy_migrated_sqlite
from tests.fakes import GitHubDouble
from workers.coordinator import CheckReport, Coordinator
from workers.worktrees import Worktrees, branch_name

REPO = "octo/widgets"
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")


@dataclass(frozen=True)
class Request:
    """One request to :class:`MemoryGH`, past its path."""

    method: str
    query: dict[str, str]
    data: Any


Route = Callable[["MemoryGH", re.Match[str], Request], Any]


@dataclass
class MemoryGH(GitHubDouble):
    """A small stateful GitHub for the endpoints the coordinator and pipeline use; records requests."""

    repo: str = REPO
    default_branch: str = "trunk"
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    labels: dict[int, list[str]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    checks: dict[int, dict[str, Any]] = field(default_factory=dict)
    suites: dict[int, dict[str, Any]] = field(default_factory=dict)
    statuses: list[dict[str, Any]] = field(default_factory=list)  # newest last
    job_logs: dict[int, str] = field(default_factory=dict)
    review_comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    pull_comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # inline comments of a PR
    roles: dict[str, str] = field(default_factory=dict)  # login -> role; anyone else reads (a public repository)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    next_id: int = 100

    def __post_init__(self) -> None:
        super().__init__()

    def add_issue(self, number: int, title: str, body: str = "", labels: list[str] | None = None) -> None:
        self.issues[number] = {"number": number, "title": title, "body": body, "state": "open", "assignees": [],
                               "user": {"login": "alice"}}
        self.labels[number] = list(labels or [])

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def writes(self, method: str | None = None) -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if c[0] in WRITE_METHODS and (method is None or c[0] == method)]

    def _route(self, method: str, url: str, data: Any) -> Any:
        self.calls.append((method, url, data))
        parts = urlsplit(url)
        prefix = f"/repos/{self.repo}"
        if not parts.path.startswith(prefix):
            raise GitHubError(404, f"unknown repository in {url}")
        request = Request(method, {k: v[0] for k, v in parse_qs(parts.query).items()}, data)
        for pattern, methods, handler in self.ROUTES:
            if (m := re.fullmatch(pattern, parts.path[len(prefix):])) and (not methods or method in methods):
                return handler(self, m, request)
        raise GitHubError(404, f"MemoryGH has no route for {method} {url}")

    # Routes, tried in order: the first whose path pattern and method match answers. ------------

    def _repository(self, m: re.Match[str], request: Request) -> Any:
        return {"full_name": self.repo, "default_branch": self.default_branch}

    def _issue(self, m: re.Match[str], request: Request) -> Any:
        return {**self.issues[int(m[1])], "labels": [{"name": n} for n in self.labels[int(m[1])]]}

    def _issue_labels(self, m: re.Match[str], request: Request) -> Any:
        number = int(m[1])
        if request.method == "POST":
            self.labels[number] += [n for n in request.data["labels"] if n not in self.labels[number]]
        elif request.method == "PUT":
            self.labels[number] = list(request.data["labels"])
        return [{"name": n} for n in self.labels[number]]

    def _remove_label(self, m: re.Match[str], request: Request) -> Any:
        name = unquote(m[2])
        if name not in self.labels[int(m[1])]:
            raise GitHubError(404, "label not on issue")
        self.labels[int(m[1])].remove(name)
        return []

    def _issue_comments(self, m: re.Match[str], request: Request) -> Any:
        if request.method == "POST":
            comment = {"id": self._id(), "issue": int(m[1]), "body": request.data["body"]}
            self.comments[comment["id"]] = comment
            return comment
        return [c for c in self.comments.values() if c["issue"] == int(m[1])]

    def _edit_comment(self, m: re.Match[str], request: Request) -> Any:
        existing = self.comments.get(int(m[1]))
        if existing is None:
            raise GitHubError(404, "comment gone")
        existing["body"] = request.data["body"]
        return existing

    def _open_pull(self, m: re.Match[str], request: Request) -> Any:
        data = request.data
        number = max([*self.issues, *self.pulls, 0]) + 1
        pull = {"number": number, "state": "open", "title": data["title"], "body": data["body"],
                "head": {"ref": data["head"]}, "base": {"ref": data["base"]}, "merged": False}
        self.pulls[number] = pull
        return pull

    def _list_pulls(self, m: re.Match[str], request: Request) -> Any:
        query = request.query
        pulls = list(self.pulls.values())
        if "head" in query:
            pulls = [p for p in pulls if p["head"]["ref"] == query["head"].split(":", 1)[1]]
        if query.get("state", "open") != "all":
            pulls = [p for p in pulls if p["state"] == query.get("state", "open")]
        return pulls

    def _pull(self, m: re.Match[str], request: Request) -> Any:
        return self.pulls[int(m[1])]

    def _statuses(self, m: re.Match[str], request: Request) -> Any:
        return [st for st in reversed(self.statuses) if st["sha"] == m[1]]

    def _check_suites(self, m: re.Match[str], request: Request) -> Any:
        suites = [su for su in self.suites.values() if su["head_sha"] == m[1]]
        return {"total_count": len(suites), "check_suites": suites}

    def _permission(self, m: re.Match[str], request: Request) -> Any:
        role = self.roles.get(unquote(m[1]), "read")
        legacy = {"maintain": "write", "triage": "read"}.get(role, role)
        return {"permission": legacy, "role_name": role, "user": {"login": unquote(m[1])}}

    def _review_comments(self, m: re.Match[str], request: Request) -> Any:
        return self.review_comments.get(int(m[2]), [])

    def _pull_comments(self, m: re.Match[str], request: Request) -> Any:
        return self.pull_comments.get(int(m[1]), [])

    def _check_runs(self, m: re.Match[str], request: Request) -> Any:
        runs = [c for c in self.checks.values() if c["head_sha"] == m[1]
                and c["name"] == request.query.get("check_name", c["name"])]
        return {"total_count": len(runs), "check_runs": runs}

    def _create_check(self, m: re.Match[str], request: Request) -> Any:
        data = request.data
        check = {"id": self._id(), **data, "annotations": list(data["output"].get("annotations", []))}
        self.checks[check["id"]] = check
        return check

    def _annotations(self, m: re.Match[str], request: Request) -> Any:
        return list(self.checks[int(m[1])].get("annotations", []))

    def _check(self, m: re.Match[str], request: Request) -> Any:
        return self.checks[int(m[1])]

    def _update_check(self, m: re.Match[str], request: Request) -> Any:
        data = request.data
        check = self.checks[int(m[1])]
        notes = data.get("output", {}).get("annotations", [])
        check.update({k: v for k, v in data.items() if k != "output"})
        if "output" in data:
            check["output"] = {**check.get("output", {}), **data["output"]}
        check["annotations"] += notes
        return check

    ROUTES: ClassVar[list[tuple[str, tuple[str, ...], Route]]] = [
        (r"", ("GET",), _repository),
        (r"/issues/(\d+)", (), _issue),
        (r"/issues/(\d+)/labels", (), _issue_labels),
        (r"/issues/(\d+)/labels/(.+)", (), _remove_label),
        (r"/issues/(\d+)/comments", (), _issue_comments),
        (r"/issues/comments/(\d+)", (), _edit_comment),
        (r"/pulls", ("POST",), _open_pull),
        (r"/pulls", (), _list_pulls),
        (r"/pulls/(\d+)", (), _pull),
        (r"/commits/([0-9a-f]+)/statuses", (), _statuses),
        (r"/commits/([0-9a-f]+)/check-suites", (), _check_suites),
        (r"/collaborators/([^/]+)/permission", (), _permission),
        (r"/pulls/(\d+)/reviews/(\d+)/comments", (), _review_comments),
        (r"/pulls/(\d+)/comments", (), _pull_comments),
        (r"/commits/([0-9a-f]+)/check-runs", (), _check_runs),
        (r"/check-runs", ("POST",), _create_check),
        (r"/check-runs/(\d+)/annotations", (), _annotations),
        (r"/check-runs/(\d+)", ("GET",), _check),
        (r"/check-runs/(\d+)", (), _update_check),
    ]

    async def getitem(self, url: str, url_vars: Mapping[str, Any] | None = None, **_: Any) -> Any:
        return self._route("GET", url, None)

    async def getiter(self, url: str, url_vars: Mapping[str, Any] | None = None, *,
                      iterable_key: str | None = "items", **_: Any) -> AsyncGenerator[Any, None]:
        data = self._route("GET", url, None)
        for item in data[iterable_key] if isinstance(data, dict) and iterable_key in data else data:
            yield item

    async def download_tail(self, url: str, *, max_bytes: int) -> bytes:
        self.calls.append(("GET", url, None))
        m = re.fullmatch(rf"/repos/{re.escape(self.repo)}/actions/jobs/(\d+)/logs", url)
        if m is None or int(m[1]) not in self.job_logs:
            raise GitHubError(404, f"no log at {url}")
        return self.job_logs[int(m[1])].encode()[-max_bytes:]

    async def post(self, url: str, url_vars: Mapping[str, Any] | None = None, *, data: Any = None, **_: Any) -> Any:
        return self._route("POST", url, data)

    async def patch(self, url: str, url_vars: Mapping[str, Any] | None = None, *, data: Any = None, **_: Any) -> Any:
        return self._route("PATCH", url, data)

    async def put(self, url: str, url_vars: Mapping[str, Any] | None = None, *, data: Any = None, **_: Any) -> Any:
        return self._route("PUT", url, data)

    async def delete(self, url: str, url_vars: Mapping[str, Any] | None = None, **_: Any) -> Any:
        return self._route("DELETE", url, None)


def sh(*args: str, cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_origin(root: Path, repo: str = REPO, files: dict[str, str] | None = None) -> Path:
    """A bare origin at ``root/<repo>.git`` with default branch ``trunk``."""
    seed = root / "seed"
    seed.mkdir(parents=True)
    sh("git", "init", "--quiet", "-b", "trunk", cwd=seed)
    for name, content in (files or {"README.md": "widgets\n", "src/app.py": "print('hi')\n"}).items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(content)
    sh("git", "add", "-A", cwd=seed)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "--quiet", "-m", "init", cwd=seed)
    bare = root / f"{repo}.git"
    bare.parent.mkdir(parents=True)
    sh("git", "clone", "--quiet", "--bare", str(seed), str(bare), cwd=root)
    return bare


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_origin(tmp_path / "remote")


@pytest.fixture
def co_settings(tmp_path: Path, origin: Path) -> Settings:
    return Settings.load(
        None, database_url=copy_migrated_sqlite(tmp_path / "db.sqlite"), state_dir=tmp_path / "state",
        git_url_template=f"file://{tmp_path / 'remote'}/{{full_name}}.git", default_backend="scripted",
        github_app_slug="agent-z",
    )


@pytest.fixture
def co_db(co_settings: Settings) -> Any:
    database = Database.from_url(co_settings.database_url)
    migrate(database)
    yield database
    database.dispose()


def _run(db: Database, **fields: Any) -> Run:
    values = {"id": "run1", "repo": REPO, "issue_number": 7, "title": "Make it faster", "status": "submitting",
              "branch": branch_name(7, "Make it faster"), "base_branch": "trunk", **fields}
    with db.begin() as session:
        session.add(Run(**values))
    with db.read() as session:
        run = session.get(Run, values["id"])
        assert run is not None
        return run


async def _checkpointed(settings: Settings, db: Database, run: Run) -> Run:
    """The run after two developer rounds, each read back and checkpointed by trusted code."""
    assert run.branch is not None
    trees = Worktrees(settings)
    path = await trees.create(run.id, REPO, run.branch, "trunk")
    (path / "src" / "app.py").write_text("print('fast')\n")
    run.checkpoint_sha = await trees.checkpoint(run.id, REPO, await trees.snapshot(run, path))
    (path / "NOTES.md").write_text("notes\n")
    run.checkpoint_sha = await trees.checkpoint(run.id, REPO, await trees.snapshot(run, path))
    return run


async def _submit(coordinator: Coordinator, run: Run) -> tuple[int, str, int]:
    sha = await coordinator.commit(run, "Fix #7: Make it faster\n\nSpeed up.\n")
    assert sha is not None
    head = await coordinator.push(run, sha)
    pr = await coordinator.ensure_pull(run, title="Fix #7: Make it faster", body="Closes #7")
    await coordinator.report_check(run, CheckReport("plan", "completed", "success", "Plan", "do it"), head_sha=head)
    await coordinator.report_check(run, CheckReport("review", "completed", "success", "Approved", "x"),
                                   head_sha=head)
    view = StatusView(run_id=run.id, status="waiting_checks", repo=REPO, issue_number=7, pr_number=pr)
    comment = await coordinator.status_comment(run, view)
    return pr, head, comment


async def test_repeated_submit_opens_one_pr_one_comment_and_no_duplicate_checks(
    co_settings: Settings, co_db: Database, origin: Path
) -> None:
    gh = MemoryGH()
    gh.add_issue(7, "Make it faster")
    run = await _checkpointed(co_settings, co_db, _run(co_db))
    coordinator = Coordinator(gh, co_db, co_settings)

    first = await _submit(coordinator, run)
    writes_after_first = len(gh.writes())
    # A crash before anything was recorded on the run: a fresh coordinator repeats every step.
    second = await _submit(Coordinator(gh, co_db, co_settings), run)

    assert first == second
    assert len(gh.pulls) == 1
    assert len(gh.comments) == 1
    assert len(gh.checks) == 2
    assert len(gh.writes()) == writes_after_first  # nothing unchanged was written again
    log = sh("git", "log", "--format=%s|%an <%ae>", f"refs/heads/{run.branch}", cwd=origin).splitlines()
    assert log[0] == "Fix #7: Make it faster|Agent-Z <agent-z@users.noreply.github.com>"
    assert len(log) == 2  # checkpoints squashed into one commit on top of the base
    files = sh("git", "show", "--name-only", "--format=", f"refs/heads/{run.branch}", cwd=origin).splitlines()
    assert sorted(files) == ["NOTES.md", "src/app.py"]


async def test_existing_pr_and_comment_are_found_without_local_records(
    co_settings: Settings, co_db: Database
) -> None:
    gh = MemoryGH()
    gh.add_issue(7, "Make it faster")
    run = _run(co_db)
    gh.pulls[8] = {"number": 8, "state": "open", "head": {"ref": run.branch}, "base": {"ref": "trunk"}}
    gh.comments[50] = {"id": 50, "issue": 7, "body": status_marker(run.id) + "\nold"}
    other = _run(co_db, id="run2", issue_number=9, branch=branch_name(9, "x"))
    coordinator = Coordinator(gh, co_db, co_settings)

    assert await coordinator.ensure_pull(run, title="t", body="b") == 8
    view = StatusView(run_id=run.id, status="done", repo=REPO, issue_number=7)
    assert await coordinator.status_comment(run, view) == 50
    assert not gh.writes("POST")
    assert coordinator.effect(other.id, "pr") is None


async def test_changed_check_content_is_patched_and_annotations_go_in_chunks(
    co_settings: Settings, co_db: Database
) -> None:
    gh = MemoryGH()
    run = _run(co_db)
    coordinator = Coordinator(gh, co_db, co_settings)
    sha = "a" * 40
    await coordinator.report_check(run, CheckReport("review", "in_progress", None, "Reviewing", "..."), head_sha=sha)
    findings = [{"path": f"f{i}.py", "start_line": 1, "end_line": 1, "annotation_level": "notice",
                 "title": "minor", "message": "m"} for i in range(120)]
    await coordinator.report_check(
        run, CheckReport("review", "completed", "success", "Approved", "ok", notes=findings), head_sha=sha)

    assert len(gh.checks) == 1
    check = next(iter(gh.checks.values()))
    assert check["status"] == "completed"
    assert check["conclusion"] == "success"
    assert len(check["annotations"]) == 120
    patches = gh.writes("PATCH")
    assert len(patches) == 3
    assert all(len(p[2]["output"].get("annotations", [])) <= 50 for p in patches)
    assert check["external_id"] == f"agent-z:{run.id}:review"


async def test_annotations_are_sent_once_although_github_appends_them(
    co_settings: Settings, co_db: Database
) -> None:
    gh = MemoryGH()
    run = _run(co_db)
    coordinator = Coordinator(gh, co_db, co_settings)
    sha = "a" * 40
    findings = [{"path": f"f{i}.py", "start_line": 1, "end_line": 1, "annotation_level": "notice",
                 "title": "minor", "message": "m"} for i in range(60)]
    await coordinator.report_check(
        run, CheckReport("review", "in_progress", None, "Reviewing", "first", notes=findings), head_sha=sha)
    await coordinator.report_check(
        run, CheckReport("review", "completed", "success", "Approved", "second", notes=findings), head_sha=sha)
    more = [*findings, {"path": "new.py", "start_line": 2, "end_line": 2, "annotation_level": "warning",
                        "title": "major", "message": "new"}]
    await coordinator.report_check(
        run, CheckReport("review", "completed", "success", "Approved", "third", notes=more), head_sha=sha)

    check = next(iter(gh.checks.values()))
    assert len(check["annotations"]) == 61
    assert check["output"]["summary"] == "third"


async def test_label_changes_take_one_request(co_settings: Settings, co_db: Database) -> None:
    gh = MemoryGH()
    gh.add_issue(7, "x", labels=["bug", "agent-z", "agent-z:queued"])
    coordinator = Coordinator(gh, co_db, co_settings)

    await coordinator.change_labels(REPO, 7, add=["ongoing", "agent-z:running"], remove=["agent-z:queued"])
    assert gh.labels[7] == ["bug", "agent-z", "ongoing", "agent-z:running"]
    await coordinator.change_labels(REPO, 7, add=["ongoing"], remove=["nope"])
    await coordinator.change_labels(REPO, 7, remove=["ongoing"])
    assert gh.labels[7] == ["bug", "agent-z", "agent-z:running"]
    assert [c[0] for c in gh.writes()] == ["PUT", "DELETE"]


async def test_deleted_status_comment_is_posted_again(co_settings: Settings, co_db: Database) -> None:
    gh = MemoryGH()
    gh.add_issue(7, "x")
    run = _run(co_db)
    coordinator = Coordinator(gh, co_db, co_settings)
    first = await coordinator.status_comment(run, StatusView(run.id, "waiting_checks", REPO, 7))
    del gh.comments[first]
    second = await coordinator.status_comment(run, StatusView(run.id, "done", REPO, 7))
    assert second != first
    assert list(gh.comments) == [second]


def test_findings_fit_check_annotations() -> None:
    from agentz_app.reporting.checks import finding_annotations

    note = finding_annotations([Finding(file="a.py", severity="info", message="x", blocking=False)])[0]
    assert note["start_line"] == 1
    assert note["annotation_level"] == "notice"
