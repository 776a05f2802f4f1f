"""Check runs and check suites: creation rules, output limits, annotations and requested actions."""

from __future__ import annotations

from typing import Any

from agentz_app.fakehub import gitrepos, render
from agentz_app.fakehub.ci import ACTIONS_APP_ID
from agentz_app.fakehub.core import HubCore
from agentz_app.fakehub.errors import ApiError, text_field
from agentz_app.fakehub.resources.repos import Repos
from agentz_app.fakehub.state import NotFoundError, Record

SUMMARY_LIMIT = 65535
MAX_ANNOTATIONS = 50
CHECK_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
CHECK_CONCLUSIONS = ("action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale",
                     "timed_out")


class Checks:
    """Check runs and suites on commits, emitting ``check_run`` and ``check_suite`` events."""

    def __init__(self, core: HubCore, repos: Repos) -> None:
        self.core = core
        self.repos = repos

    # ---- the API -----------------------------------------------------------------
    async def create_run(self, full_name: str, body: Record, *, actor: str) -> Record:
        """Create a check run for the App (emits ``check_run.created`` and, if done, ``completed``)."""
        core = self.core
        repo = core.state.repo(full_name)
        fields = _validate_check(body, creating=True)
        head_sha = body.get("head_sha")
        if not isinstance(head_sha, str) or not await gitrepos.commit_exists(core.repo_git(full_name), head_sha):
            raise ApiError.validation("CheckRun", "head_sha", "custom", f"No commit found for SHA: {head_sha}")
        return self._new_run(repo["full_name"], head_sha, fields, actor=actor, app_slug=core.app.slug)

    def update_run(self, full_name: str, run_id: int, body: Record, *, actor: str) -> Record:
        """PATCH a check run; emit ``check_run.completed`` when it completes."""
        rec = self._run(full_name, run_id)
        fields = _validate_check(body, creating=False)
        was_completed = rec["status"] == "completed"
        if "output" in fields:
            output = fields.pop("output")
            rec["output"] = {k: output.get(k) for k in ("title", "summary", "text")}
            rec["annotations"].extend(output.get("annotations") or [])
        rec.update(fields)
        now = self.core.state.now()
        rec["updated_at"] = now
        if rec["status"] == "completed" and not was_completed:
            rec["completed_at"] = rec.get("completed_at") or now
            self.emit_run(rec, "completed", actor)
            self._maybe_suite_completed(self.core.state.by_id("check_suites", rec["check_suite_id"]), actor)
        self.core.changed()
        return self.run_json(rec)

    def get_run(self, full_name: str, run_id: int) -> Record:
        """One check run."""
        return self.run_json(self._run(full_name, run_id))

    def annotations(self, full_name: str, run_id: int) -> list[Record]:
        """The annotations of a check run."""
        return list(self._run(full_name, run_id)["annotations"])

    def request_action(self, full_name: str, run_id: int, identifier: str, *, user: str | None = None) -> None:
        """Click a check run's action button: emit ``check_run.requested_action``."""
        rec = self._run(full_name, run_id)
        if identifier not in [a["identifier"] for a in rec.get("actions", [])]:
            raise ApiError(422, f"check run {run_id} has no action {identifier!r}")
        self.emit_run(rec, "requested_action", user or self.core.default_user,
                      requested_action={"identifier": identifier})

    async def find_runs(self, full_name: str, ref: str, *, check_name: str | None = None,
                        status: str | None = None, latest: bool = True) -> list[Record]:
        """Check runs on a commit, newest first; only the latest per name unless ``latest`` is False."""
        sha = await self.repos.resolve_ref(full_name, ref)
        repo = self.core.state.repo(full_name)["full_name"]
        runs = sorted((r for r in self.core.state.data["check_runs"].values()
                       if r["repo"] == repo and r["head_sha"] == sha
                       and (check_name is None or r["name"] == check_name)
                       and (status is None or r["status"] == status)), key=lambda r: r["id"], reverse=True)
        if latest:
            seen: set[tuple[str, int]] = set()
            kept = []
            for r in runs:
                if (r["name"], r["check_suite_id"]) not in seen:
                    seen.add((r["name"], r["check_suite_id"]))
                    kept.append(r)
            runs = kept
        return [self.run_json(r) for r in runs]

    async def find_suites(self, full_name: str, ref: str) -> list[Record]:
        """Check suites on a commit."""
        sha = await self.repos.resolve_ref(full_name, ref)
        repo = self.core.state.repo(full_name)["full_name"]
        return [self.suite_json(s) for s in self.core.state.data["check_suites"].values()
                if s["repo"] == repo and s["head_sha"] == sha]

    # ---- primitives for simulated CI (see :mod:`agentz_app.fakehub.ci`) -----------
    def new_suite(self, full_name: str, sha: str, *, app_slug: str, branch: str | None,
                  before: str | None = None) -> Record:
        """A new check suite (GitHub Actions has one per workflow run)."""
        core = self.core
        now = core.state.now()
        rec: Record = {"id": core.state.new_id(), "repo": full_name, "head_sha": sha, "head_branch": branch,
                       "app_slug": app_slug, "app_id": core.app.id if app_slug == core.app.slug else ACTIONS_APP_ID,
                       "before": before, "created_at": now, "updated_at": now}
        core.state.data["check_suites"][str(rec["id"])] = rec
        return rec

    def emit_run(self, rec: Record, action: str, actor: str, **extra: Any) -> None:
        """Emit a ``check_run`` event for ``rec``."""
        core = self.core
        payload = core.envelope(core.state.repo(rec["repo"]), actor, action)
        payload["check_run"] = self.run_json(rec)
        payload["check_run"]["check_suite"] = self.suite_json(core.state.by_id("check_suites", rec["check_suite_id"]))
        payload.update(extra)
        core.emit("check_run", payload)

    def emit_suite(self, suite: Record, action: str, actor: str) -> None:
        """Emit a ``check_suite`` event for ``suite``."""
        payload = self.core.envelope(self.core.state.repo(suite["repo"]), actor, action)
        payload["check_suite"] = self.suite_json(suite)
        self.core.emit("check_suite", payload)

    def suite_maybe_completed(self, suite_id: int, actor: str) -> None:
        """Emit ``check_suite.completed`` when every latest check run of the suite completed."""
        self._maybe_suite_completed(self.core.state.by_id("check_suites", suite_id), actor)

    def run_json(self, rec: Record) -> Record:
        """A check run as the API returns it."""
        return render.check_run(self.core.ctx, rec, pulls=self._pulls_for_sha(rec["repo"], rec["head_sha"]))

    def suite_json(self, rec: Record) -> Record:
        """A check suite as the API returns it."""
        return render.check_suite(self.core.ctx, rec, pulls=self._pulls_for_sha(rec["repo"], rec["head_sha"]))

    # ---- internals ---------------------------------------------------------------
    def _new_run(self, full_name: str, head_sha: str, fields: Record, *, actor: str, app_slug: str,
                 branch: str | None = None, before: str | None = None) -> Record:
        core = self.core
        suite = self._suite_for(full_name, head_sha, app_slug=app_slug, branch=branch, before=before)
        now = core.state.now()
        output = fields.pop("output", {"title": None, "summary": None, "text": None, "annotations": []})
        rec: Record = {"id": core.state.new_id(), "repo": full_name, "head_sha": head_sha,
                       "check_suite_id": suite["id"],
                       "app_slug": app_slug, "app_id": suite["app_id"], "status": "queued", "conclusion": None,
                       "started_at": now, "completed_at": None, "external_id": "", "details_url": None,
                       "output": {k: output.get(k) for k in ("title", "summary", "text")},
                       "annotations": list(output.get("annotations") or []), "actions": [], "created_at": now,
                       "updated_at": now}
        rec.update(fields)
        if rec["status"] == "completed" and not rec.get("completed_at"):
            rec["completed_at"] = now
        core.state.data["check_runs"][str(rec["id"])] = rec
        suite["updated_at"] = now
        self.emit_run(rec, "created", actor)
        if rec["status"] == "completed":
            self.emit_run(rec, "completed", actor)
            self._maybe_suite_completed(suite, actor)
        core.changed()
        return self.run_json(rec)

    def _suite_for(self, full_name: str, sha: str, *, app_slug: str, branch: str | None,
                   before: str | None = None) -> Record:
        suites: dict[str, Record] = self.core.state.data["check_suites"]
        for existing in suites.values():
            if existing["repo"] == full_name and existing["head_sha"] == sha and existing["app_slug"] == app_slug:
                return existing
        return self.new_suite(full_name, sha, app_slug=app_slug, branch=branch, before=before)

    def _run(self, full_name: str, run_id: int) -> Record:
        rec = self.core.state.by_id("check_runs", run_id)
        if rec["repo"].lower() != self.core.state.repo(full_name)["full_name"].lower():
            raise NotFoundError(f"check run {run_id}")
        return rec

    def _maybe_suite_completed(self, suite: Record, actor: str) -> None:
        runs = render.latest_runs([r for r in self.core.state.data["check_runs"].values()
                                   if r["check_suite_id"] == suite["id"]])
        status, _ = render.suite_status(runs)
        if status != "completed":
            return
        suite["updated_at"] = self.core.state.now()
        self.emit_suite(suite, "completed", actor)

    def _pulls_for_sha(self, full_name: str, sha: str) -> list[Record]:
        state = self.core.state
        repo = state.repo(full_name)
        return [r for r in state.issues_of(full_name).values()
                if r.get("pull") and r["state"] == "open" and r["pull"]["head_sha"] == sha
                and r["pull"]["head_owner"] == repo["owner"]]


def _validate_check(body: Record, *, creating: bool) -> Record:
    fields: Record = {}
    if creating or "name" in body:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError.validation("CheckRun", "name", "missing_field")
        fields["name"] = name
    for key in ("details_url", "external_id", "started_at", "completed_at"):
        if key in body:
            fields[key] = text_field(body[key], key)
    fields.update(_validate_status(body.get("status"), body.get("conclusion")))
    if "output" in body:
        fields["output"] = _validate_output(body["output"])
    if "actions" in body:
        fields["actions"] = _validate_actions(body["actions"])
    return fields


def _validate_status(status: Any, conclusion: Any) -> Record:
    """``status`` and ``conclusion`` as GitHub stores them: a conclusion completes the check and vice versa."""
    if status is not None and status not in CHECK_STATUSES:
        raise ApiError.validation("CheckRun", "status")
    if conclusion is not None:
        if conclusion not in CHECK_CONCLUSIONS:
            raise ApiError.validation("CheckRun", "conclusion")
        status = "completed"
    if status == "completed" and conclusion is None:
        raise ApiError(422, "Invalid request.\n\n\"conclusion\" wasn't supplied.")
    return {} if status is None else {"status": status, "conclusion": conclusion}


def _validate_output(output: Any) -> Record:
    if not isinstance(output, dict):
        raise ApiError(422, "Invalid request.\n\noutput is not an object.")
    for key in ("title", "summary"):
        if not isinstance(output.get(key), str):
            raise ApiError(422, f"Invalid request.\n\n\"{key}\" wasn't supplied.")
    _validate_texts(output)
    annotations = _validate_annotations(output.get("annotations") or [])
    return {"title": output["title"], "summary": output["summary"], "text": output.get("text"),
            "annotations": annotations}


def _validate_texts(output: Record) -> None:
    for key in ("summary", "text"):
        value = output.get(key)
        if value is not None and not isinstance(value, str):
            raise ApiError(422, f"Invalid request.\n\n{key} is not a string.")
        if value is not None and len(value.encode("utf-8")) > SUMMARY_LIMIT:
            # GitHub counts UTF-8 bytes here, not characters.
            raise ApiError.validation("CheckRun", f"output.{key}", "custom",
                                      f"{key} exceeds a maximum bytesize of {SUMMARY_LIMIT}")


def _validate_annotations(annotations: Any) -> list[Record]:
    if not isinstance(annotations, list):
        raise ApiError(422, "Invalid request.\n\nannotations is not an array.")
    if len(annotations) > MAX_ANNOTATIONS:
        raise ApiError(422, "Invalid request.\n\nFor 'properties/annotations', "
                            f"{len(annotations)} items are more than the maximum of {MAX_ANNOTATIONS}.")
    for item in annotations:
        if (not isinstance(item, dict) or not isinstance(item.get("path"), str)
                or not isinstance(item.get("start_line"), int) or not isinstance(item.get("end_line"), int)
                or item.get("annotation_level") not in ("notice", "warning", "failure")
                or not isinstance(item.get("message"), str)):
            raise ApiError.validation("CheckRun", "output.annotations")
    return annotations


def _validate_actions(actions: Any) -> list[Record]:
    if not isinstance(actions, list) or len(actions) > 3:
        raise ApiError(422, "Invalid request.\n\nactions must be a list of at most 3 items.")
    for item in actions:
        ok = isinstance(item, dict) and all(isinstance(item.get(k), str) and 0 < len(item[k]) <= n
                                            for k, n in (("label", 20), ("description", 40), ("identifier", 20)))
        if not ok:
            raise ApiError.validation("CheckRun", "actions")
    return list(actions)
