"""Read a head SHA's CI from GitHub: every suite, check run and status (paginated), and
what a failed check says (a GitHub Actions job's log, another App's output and annotations).

Everything read here is untrusted text from CI: it is bounded, stripped of escape
sequences, redacted of secrets, and reaches an agent only inside an untrusted block
(:func:`workers.roles.prompts.feedback_prompt`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from gidgethub.abc import GitHubAPI
from sqlalchemy import delete

from agentz_app.domain.ci import CheckSignal, SuiteSignal, Verdict
from agentz_app.domain.joblogs import failing_step_tail, plain_lines
from agentz_app.errors import GitHubError
from agentz_app.ingress.checks import check_run_record, check_suite_record, status_record
from agentz_app.logs import get_logger
from agentz_app.secrets import redact_text
from agentz_app.store.ci import CIRecord, record_ci
from agentz_app.store.db import Database
from agentz_app.store.models import CheckResult

ACTIONS_SLUG = "github-actions"
MAX_LOG_BYTES = 2 * 1024 * 1024  # the end of a job log: the failing step is near it
MAX_FAILED_CHECKS = 8
MAX_ANNOTATIONS = 50
MAX_SUMMARY_CHARS = 4_000


@runtime_checkable
class LogDownloads(Protocol):
    """A client that can read a job's log behind its redirect (our :class:`~agentz_app.github.client.GitHubClient`)."""

    async def download_tail(self, url: str, *, max_bytes: int) -> bytes:
        """The last ``max_bytes`` bytes behind ``url``."""
        ...

log = get_logger("agentz.ci")


async def list_ci(gh: GitHubAPI, repo: str, sha: str) -> list[CIRecord]:
    """Every check suite, check run (all attempts) and latest status per context of ``sha``, from GitHub."""
    records: list[CIRecord] = []
    async for suite in gh.getiter(f"/repos/{repo}/commits/{sha}/check-suites?per_page=100",
                                  iterable_key="check_suites"):
        records.append(check_suite_record(suite))
    async for check_run in gh.getiter(f"/repos/{repo}/commits/{sha}/check-runs?filter=all&per_page=100",
                                      iterable_key="check_runs"):
        records.append(check_run_record(check_run))
    contexts: set[str] = set()
    async for status in gh.getiter(f"/repos/{repo}/commits/{sha}/statuses?per_page=100"):
        record = status_record(status, sha=sha)
        if record.key not in contexts:  # newest first: the first one of a context is its state
            contexts.add(record.key)
            records.append(record)
    return records


async def refresh_ci(gh: GitHubAPI, db: Database, repo: str, sha: str, *, own_slug: str) -> int:
    """Store what GitHub lists for ``sha``; returns how many stored signals changed.

    Rows stored before check runs were keyed by id (their key is the name) are dropped,
    since the listing holds every check run.
    """
    records = await list_ci(gh, repo, sha)
    return await db.run(_store_ci, db, repo, sha, records, own_slug=own_slug)


def _store_ci(db: Database, repo: str, sha: str, records: list[CIRecord], *, own_slug: str) -> int:
    changed = 0
    with db.begin() as session:
        session.execute(delete(CheckResult).where(
            CheckResult.repo == repo, CheckResult.head_sha == sha, CheckResult.source == "check_run",
            CheckResult.suite_id.is_(None), CheckResult.key.not_in([r.key for r in records] or [""])))
        for record in records:
            changed += record_ci(session, repo, record, own_slug=own_slug)
    return changed


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _actions_log(gh: LogDownloads, repo: str, check: CheckSignal) -> str:
    """The failing step's tail of a GitHub Actions job (a job's id is its check run's id)."""
    data = await gh.download_tail(f"/repos/{repo}/actions/jobs/{check.key}/logs", max_bytes=MAX_LOG_BYTES)
    return failing_step_tail(bytes(data).decode("utf-8", errors="replace"))


async def _output_and_annotations(gh: GitHubAPI, repo: str, check: CheckSignal) -> tuple[str, list[dict[str, Any]]]:
    """Another App's check run output (title, summary, text) and its first annotations."""
    data = await gh.getitem(f"/repos/{repo}/check-runs/{check.key}")
    output = data.get("output") if isinstance(data, dict) else None
    output = output if isinstance(output, dict) else {}
    parts = [str(output.get(key) or "").strip() for key in ("title", "summary", "text")]
    text = "\n\n".join(part for part in parts if part)
    notes: list[dict[str, Any]] = []
    if int(output.get("annotations_count") or 0) > 0:
        async for note in gh.getiter(f"/repos/{repo}/check-runs/{check.key}/annotations?per_page=100"):
            notes.append({key: note.get(key) for key in ("path", "start_line", "annotation_level", "title")}
                         | {"message": str(note.get("message") or "")[:1000]})
            if len(notes) >= MAX_ANNOTATIONS:
                break
    return "\n".join(plain_lines(text)), notes


async def describe_failure(gh: GitHubAPI, repo: str, check: CheckSignal, *,
                           secret_values: Sequence[str]) -> dict[str, Any]:
    """What the fixer is told about one failed check; GitHub errors fall back to the stored summary."""
    item: dict[str, Any] = {"name": check.name, "conclusion": check.conclusion, "app": check.app_slug or "",
                            "summary": check.summary}
    try:
        if check.source == "check_run" and check.key.isdigit():
            if check.app_slug == ACTIONS_SLUG:
                if isinstance(gh, LogDownloads):  # a client without downloads leaves the stored summary
                    item["log"] = await _actions_log(gh, repo, check)
            else:
                item["summary"], item["annotations"] = await _output_and_annotations(gh, repo, check)
    except GitHubError as exc:
        log.warning("could not read a failed check's details", repo=repo, check=check.name, error=str(exc))
    item["summary"] = redact_text(_clip("\n".join(plain_lines(str(item["summary"]))), MAX_SUMMARY_CHARS),
                                  values=secret_values)
    if "log" in item:
        item["log"] = redact_text(str(item["log"]), values=secret_values)
    for note in item.get("annotations", []):
        note["message"] = redact_text(note["message"], values=secret_values)
        note["title"] = redact_text(str(note.get("title") or ""), values=secret_values)
    return item


async def ci_failure_feedback(gh: GitHubAPI, repo: str, verdict: Verdict, *,
                              secret_values: Sequence[str]) -> dict[str, Any]:
    """The feedback handed to the fixer for a failed CI round."""
    checks = [await describe_failure(gh, repo, check, secret_values=secret_values)
              for check in verdict.failed[:MAX_FAILED_CHECKS]]
    checks += [_suite_failure(suite) for suite in verdict.failed_suites[: max(0, MAX_FAILED_CHECKS - len(checks))]]
    return {"kind": "ci", "checks": checks}


def _suite_failure(suite: SuiteSignal) -> dict[str, Any]:
    return {"name": f"check suite of {suite.app_slug or 'an App'}", "conclusion": suite.conclusion,
            "app": suite.app_slug or "", "summary": "The suite failed before any check run started "
                                                   "(for GitHub Actions: the workflow file could not run)."}
