"""Deterministic GitHub and git steps of a run: no agent, every step safe to repeat.

Commit (squashing WIP into one commit per round), push to the run's own branch,
find-or-create the pull request by head branch, report each stage as a Check Run
keyed by ``external_id``, keep one status comment edited in place, and change
labels in as few requests as possible. Objects created are recorded in
``side_effects``; the last rendered text of each is hashed in ``rendered_digests`` so unchanged
content is never PATCHed again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from gidgethub.abc import GitHubAPI
from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.domain.plans import Plan, plan_markdown
from agentz_app.errors import GitHubError
from agentz_app.logs import get_logger
from agentz_app.reporting.checks import ANNOTATIONS_PER_REQUEST, check_run_payload, chunks, redact_annotation
from agentz_app.reporting.comments import StatusView, marker_run_id, render_status_comment
from agentz_app.secrets import configured_secret_values
from agentz_app.store import rendered
from agentz_app.store.db import Database
from agentz_app.store.models import Run, SideEffect
from workers.gitops import git_out
from workers.worktrees import Worktrees

LABEL_QUEUED = "agent-z:queued"
LABEL_RUNNING = "agent-z:running"
LABEL_NEEDS_HUMAN = "agent-z:needs-human"
ACK_REACTION = "eyes"
_CONCLUDED = "concluded:"

log = get_logger("agentz.coordinator")


@dataclass(frozen=True)
class CheckReport:
    """One stage's check run content."""

    stage: str
    status: str
    conclusion: str | None
    title: str
    summary: str
    text: str = ""
    notes: Sequence[dict[str, Any]] = ()


def content_digest(value: object) -> str:
    """A stable hash of rendered content."""
    return hashlib.sha256(repr(value).encode()).hexdigest()


class Coordinator:
    """The idempotent steps that turn a worktree into a reported pull request."""

    def __init__(self, gh: GitHubAPI, db: Database, settings: Settings, *, worktrees: Worktrees | None = None) -> None:
        self.gh = gh
        self.db = db
        self.settings = settings
        self.worktrees = worktrees or Worktrees(settings)
        # Everything this coordinator writes to GitHub is redacted of these exact values too.
        self.secret_values = configured_secret_values(settings)

    # Bookkeeping ---------------------------------------------------------

    def effect(self, run_id: str, key: str) -> int | None:
        """The GitHub id recorded for ``key`` of the run, if any."""
        with self.db.read() as session:
            row = session.scalars(
                select(SideEffect).where(SideEffect.run_id == run_id, SideEffect.key == key)
            ).first()
            return row.github_id if row is not None else None

    def record_effect(self, run_id: str, key: str, github_id: int) -> None:
        """Remember a created GitHub object (replacing a stale id)."""
        with self.db.begin() as session:
            row = session.scalars(
                select(SideEffect).where(SideEffect.run_id == run_id, SideEffect.key == key).with_for_update()
            ).first()
            if row is None:
                session.add(SideEffect(run_id=run_id, key=key, github_id=github_id))
            else:
                row.github_id = github_id

    def rendered_digest(self, run_id: str, key: str) -> str | None:
        return rendered.rendered_digest(self.db, run_id, key)

    def remember_digest(self, run_id: str, key: str, digest: str) -> None:
        rendered.remember_digest(self.db, run_id, key, digest)

    # Git -----------------------------------------------------------------

    async def commit(self, run: Run, message: str) -> str | None:
        """The commit to push for the run's checkpoint: its tree on the pushed head (or where it left the base).

        Made in the trusted mirror from the checkpoint's tree, never from the agent's
        repository. Returns None when that tree changes nothing. The same checkpoint and
        message give the same SHA, so repeating it after a crash creates nothing new.
        """
        if not run.checkpoint_sha:
            return None
        tree = await self.worktrees.tree_of(run.repo, run.checkpoint_sha)
        parent = run.head_sha or await self.worktrees.merge_base(
            run.repo, run.base_branch or "main", run.checkpoint_sha
        )
        if tree == await self.worktrees.tree_of(run.repo, parent):
            return None
        date = await git_out("log", "-1", "--format=%cI", run.checkpoint_sha, cwd=self.worktrees.mirror_path(run.repo))
        return await self.worktrees.commit_tree(run.repo, tree, parent, message, date=date)

    async def push(self, run: Run, sha: str) -> str:
        """Push ``sha`` from the mirror to the run's own branch; returns the pushed SHA."""
        if not run.branch:
            raise ValueError(f"run {run.id} has no branch")
        return await self.worktrees.push_branch(run.repo, sha, run.branch)

    # Pull request --------------------------------------------------------

    async def find_pull(self, run: Run) -> dict[str, Any] | None:
        """The PR whose head is the run's branch (any state), or None."""
        owner = run.repo.split("/")[0]
        head = quote(f"{owner}:{run.branch}", safe=":/")
        async for pull in self.gh.getiter(f"/repos/{run.repo}/pulls?head={head}&state=all&per_page=100"):
            if isinstance(pull, dict) and (pull.get("head") or {}).get("ref") == run.branch:
                return pull
        return None

    async def ensure_pull(self, run: Run, *, title: str, body: str) -> int:
        """Find the run's PR by head branch, or open it; never a second one."""
        known = run.pr_number or await self.db.run(self.effect, run.id, "pr")
        if known:
            return int(known)
        pull = await self.find_pull(run)
        if pull is None:
            pull = await self.gh.post(
                f"/repos/{run.repo}/pulls",
                data={"title": title, "head": run.branch, "base": run.base_branch or "main", "body": body},
            )
        number = int(pull["number"])
        await self.db.run(self.record_effect, run.id, "pr", number)
        return number

    # Check runs ----------------------------------------------------------

    async def _find_check(self, run: Run, stage_name: str, external: str, head_sha: str) -> int | None:
        url = f"/repos/{run.repo}/commits/{head_sha}/check-runs?check_name={quote(stage_name)}&per_page=100"
        try:
            data = await self.gh.getitem(url)
        except GitHubError as exc:
            if exc.status_code == 404:
                return None
            raise
        for check in (data or {}).get("check_runs", []):
            if check.get("external_id") == external:
                return int(check["id"])
        return None

    async def report_check(self, run: Run, report: CheckReport, *, head_sha: str) -> int:
        """Create the stage's check run on ``head_sha`` once, PATCH it only when its content changed."""
        payload = check_run_payload(
            run.id, report.stage, head_sha=head_sha, status=report.status, conclusion=report.conclusion,
            title=report.title, summary=report.summary, text=report.text, notes=report.notes,
            secret_values=self.secret_values,
        )
        key = f"check:{report.stage}:{head_sha}"
        digest = content_digest((payload, list(report.notes)))
        check_id = await self.db.run(self.effect, run.id, key) or await self._find_check(
            run, payload["name"], payload["external_id"], head_sha
        )
        # GitHub appends annotations on every request that carries them: send each one once.
        notes = {content_digest(note)[:16]: redact_annotation(note, secret_values=self.secret_values)
                 for note in report.notes}
        sent = set((await self.db.run(self.rendered_digest, run.id, f"{key}:annotations") or "").split())
        if check_id is None:
            created = await self.gh.post(f"/repos/{run.repo}/check-runs", data=payload)
            check_id = int(created["id"])
            await self.db.run(self.record_effect, run.id, key, check_id)
            sent = {content_digest(note)[:16] for note in list(report.notes)[:ANNOTATIONS_PER_REQUEST]}
            pending = [note for name, note in notes.items() if name not in sent]
        elif await self.db.run(self.rendered_digest, run.id, key) == digest:
            return check_id
        else:
            await self.db.run(self.record_effect, run.id, key, check_id)
            pending = [note for name, note in notes.items() if name not in sent]
            patch = {k: v for k, v in payload.items() if k not in ("name", "head_sha", "external_id")}
            patch["output"] = {k: v for k, v in payload["output"].items() if k != "annotations"}
            if pending:
                patch["output"]["annotations"] = pending[:ANNOTATIONS_PER_REQUEST]
                pending = pending[ANNOTATIONS_PER_REQUEST:]
            await self.gh.patch(f"/repos/{run.repo}/check-runs/{check_id}", data=patch)
        for batch in chunks(pending):
            output = {"title": payload["output"]["title"], "summary": payload["output"]["summary"],
                      "annotations": batch}
            await self.gh.patch(f"/repos/{run.repo}/check-runs/{check_id}", data={"output": output})
        await self.db.run(self.remember_digest, run.id, f"{key}:annotations", " ".join(notes))
        await self.db.run(self.remember_digest, run.id, key, digest)
        return check_id

    def check_effects(self, run_id: str, head_sha: str) -> dict[str, int]:
        """The run's check runs on ``head_sha``: side-effect key → check run id."""
        suffix = f":{head_sha}"
        with self.db.read() as session:
            rows = session.scalars(
                select(SideEffect).where(SideEffect.run_id == run_id, SideEffect.key.startswith("check:"))
            ).all()
            return {row.key: row.github_id for row in rows if row.key.endswith(suffix)}

    async def conclude_checks(self, run: Run, conclusion: str) -> int:
        """Conclude every check run of the run's head with ``conclusion`` once; returns how many were changed."""
        if not run.head_sha:
            return 0
        marker = content_digest((_CONCLUDED, conclusion))
        changed = 0
        for key, check_id in sorted((await self.db.run(self.check_effects, run.id, run.head_sha)).items()):
            if await self.db.run(self.rendered_digest, run.id, key) == marker:
                continue
            await self.gh.patch(f"/repos/{run.repo}/check-runs/{check_id}",
                                data={"status": "completed", "conclusion": conclusion})
            await self.db.run(self.remember_digest, run.id, key, marker)
            changed += 1
        return changed

    # Acknowledgement and review request ----------------------------------

    async def acknowledge(self, run: Run, trigger_ref: str) -> bool:
        """Put 👀 on what asked for the run (``issue`` or ``comment:<id>``) once; False for an unknown ref."""
        key = f"ack:{trigger_ref}"
        if await self.db.run(self.effect, run.id, key) is not None:
            return True
        kind, _, ident = trigger_ref.partition(":")
        if kind == "issue" and not ident:
            url = f"/repos/{run.repo}/issues/{run.issue_number}/reactions"
        elif kind == "comment" and ident.isdigit():
            url = f"/repos/{run.repo}/issues/comments/{int(ident)}/reactions"
        else:
            return False
        try:
            created = await self.gh.post(url, data={"content": ACK_REACTION})
        except GitHubError as exc:
            if exc.status_code not in (404, 410):
                raise
            created = {"id": 0}  # the comment is gone: nothing left to acknowledge
        await self.db.run(self.record_effect, run.id, key, int((created or {}).get("id") or 0))
        return True

    async def request_review(self, run: Run, login: str) -> bool:
        """Ask ``login`` to review the run's pull request once; False when that person is its author."""
        if not run.pr_number or await self.db.run(self.effect, run.id, "review_request") is not None:
            return False
        pull = await self.gh.getitem(f"/repos/{run.repo}/pulls/{run.pr_number}")
        author = str(((pull or {}).get("user") or {}).get("login") or "")
        requested = {str(u.get("login") or "").lower() for u in (pull or {}).get("requested_reviewers") or []
                     if isinstance(u, dict)}
        if author.lower() == login.lower() or login.lower() in requested:
            await self.db.run(self.record_effect, run.id, "review_request", 0)
            return False
        await self.gh.post(f"/repos/{run.repo}/pulls/{run.pr_number}/requested_reviewers",
                           data={"reviewers": [login]})
        await self.db.run(self.record_effect, run.id, "review_request", run.pr_number)
        return True

    # Status comment ------------------------------------------------------

    async def _find_comment(self, run: Run) -> int | None:
        url = f"/repos/{run.repo}/issues/{run.issue_number}/comments?per_page=100"
        async for comment in self.gh.getiter(url):
            if isinstance(comment, dict) and marker_run_id(str(comment.get("body") or "")) == run.id:
                return int(comment["id"])
        return None

    async def status_comment(self, run: Run, view: StatusView) -> int:
        """Create the run's status comment once, then edit it in place when its text changes."""
        body = render_status_comment(view, secret_values=self.secret_values)
        digest = content_digest(body)
        comment_id = (run.status_comment_id or await self.db.run(self.effect, run.id, "status_comment")
                      or await self._find_comment(run))
        if comment_id is not None and await self.db.run(self.rendered_digest, run.id, "status_comment") == digest:
            return int(comment_id)
        if comment_id is not None:
            try:
                await self.gh.patch(f"/repos/{run.repo}/issues/comments/{comment_id}", data={"body": body})
            except GitHubError as exc:
                if exc.status_code != 404:
                    raise
                comment_id = None  # deleted by someone: post it again
        if comment_id is None:
            created = await self.gh.post(f"/repos/{run.repo}/issues/{run.issue_number}/comments", data={"body": body})
            comment_id = int(created["id"])
        await self.db.run(self.record_effect, run.id, "status_comment", int(comment_id))
        await self.db.run(self.remember_digest, run.id, "status_comment", digest)
        return int(comment_id)

    # Labels --------------------------------------------------------------

    async def change_labels(
        self, repo: str, number: int, *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> list[str]:
        """Add and remove labels in at most one write; returns the resulting labels."""
        issue = await self.gh.getitem(f"/repos/{repo}/issues/{number}")
        current = [
            str(label.get("name")) if isinstance(label, dict) else str(label)
            for label in (issue.get("labels") or [] if isinstance(issue, dict) else [])
        ]
        additions = [name for name in dict.fromkeys(add) if name not in current]
        removals = {name for name in remove if name in current and name not in additions}
        wanted = [name for name in current if name not in removals] + additions
        if not additions and not removals:
            return current
        if not removals:
            await self.gh.post(f"/repos/{repo}/issues/{number}/labels", data={"labels": additions})
        elif not additions and len(removals) == 1:
            await self.gh.delete(f"/repos/{repo}/issues/{number}/labels/{quote(next(iter(removals)), safe='')}")
        elif not wanted:
            await self.gh.delete(f"/repos/{repo}/issues/{number}/labels")  # GitHub refuses an empty PUT
        else:
            try:
                await self.gh.put(f"/repos/{repo}/issues/{number}/labels", data={"labels": wanted})
            except GitHubError as exc:
                if exc.status_code not in (404, 405, 501):
                    raise
                # A server without "set labels": add, then remove one by one.
                if additions:
                    await self.gh.post(f"/repos/{repo}/issues/{number}/labels", data={"labels": additions})
                for name in sorted(removals):
                    await self.gh.delete(f"/repos/{repo}/issues/{number}/labels/{quote(name, safe='')}")
        return wanted


def status_view(run: Run, *, review_summary: str | None = None, notes: Sequence[str] = (),
                reason: str | None = None) -> StatusView:
    """The status comment view of a run as stored (its recorded notes first)."""
    plan_md = None
    if run.plan:
        try:
            plan_md = plan_markdown(Plan.model_validate(run.plan))
        except ValueError:
            plan_md = None
    return StatusView(
        run_id=run.id, status=str(run.status), repo=run.repo, issue_number=run.issue_number, branch=run.branch,
        pr_number=run.pr_number, plan_markdown=plan_md, review_summary=review_summary,
        review_rounds=run.review_round, ci_rounds=run.ci_round, error=run.error, reason=reason,
        cost_usd=run.cost_usd, tokens=run.tokens or 0,
        notes=(*(run.notes or ()), *notes),
    )
