"""Pull requests (head, base, merging, changed files, review requests) and their reviews."""

from __future__ import annotations

import re
from typing import Any

from agentz_app.fakehub import gitrepos, render
from agentz_app.fakehub.core import HubCore
from agentz_app.fakehub.errors import ApiError, names_list, text_field
from agentz_app.fakehub.resources.issues import Issues
from agentz_app.fakehub.resources.pushes import Pushes
from agentz_app.fakehub.resources.repos import Repos
from agentz_app.fakehub.state import NotFoundError, Record

_CLOSING = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d+)", re.IGNORECASE)
_REVIEW_STATES: dict[str | None, str] = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED",
                                         "COMMENT": "COMMENTED", None: "PENDING"}


class Pulls:
    """Pull requests, stored as issues with a ``pull`` part, emitting ``pull_request`` events."""

    def __init__(self, core: HubCore, issues: Issues, repos: Repos, pushes: Pushes) -> None:
        self.core = core
        self.issues = issues
        self.repos = repos
        self.pushes = pushes

    def _parse_head(self, full_name: str, head: Any) -> tuple[str, str]:
        if not isinstance(head, str) or not head:
            raise ApiError.validation("PullRequest", "head", "missing_field")
        owner, sep, ref = head.partition(":")
        if not sep:
            owner, ref = self.core.state.repo(full_name)["owner"], head
        return owner, ref

    async def create(self, full_name: str, body: Record, *, actor: str) -> Record:
        """Open a pull request like ``POST /repos/{o}/{r}/pulls`` (422 on a duplicate head)."""
        core = self.core
        repo = core.state.repo(full_name)
        title = text_field(body.get("title"), "title", limit=256)
        if not title:
            raise ApiError.validation("PullRequest", "title", "missing_field")
        head_owner, head_ref = self._parse_head(full_name, body.get("head"))
        if body.get("maintainer_can_modify") and actor == core.app.bot_login:
            # Only a person who can push to the fork may grant it; an App never can.
            raise ApiError.validation("PullRequest", "maintainer_can_modify", "custom",
                                      "Fork collab can't be granted by someone without permission")
        base_ref = body.get("base")
        if not isinstance(base_ref, str) or not base_ref:
            raise ApiError.validation("PullRequest", "base", "missing_field")
        path = core.repo_git(full_name)
        base_sha = await gitrepos.rev_parse(path, f"refs/heads/{base_ref}")
        if base_sha is None:
            raise ApiError.validation("PullRequest", "base")
        head_sha = await gitrepos.rev_parse(path, f"refs/heads/{head_ref}")
        if head_sha is None:
            raise ApiError.validation("PullRequest", "head")
        for other in core.state.issues_of(full_name).values():
            pull = other.get("pull")
            if (pull and other["state"] == "open" and pull["head_ref"] == head_ref
                    and pull["head_owner"] == head_owner and pull["base_ref"] == base_ref):
                raise ApiError(422, "Validation Failed", errors=[{
                    "resource": "PullRequest", "code": "custom",
                    "message": f"A pull request already exists for {head_owner}:{head_ref}."}])
        if await gitrepos.merge_base(path, head_sha, base_sha) == head_sha:
            raise ApiError(422, "Validation Failed", errors=[{
                "resource": "PullRequest", "code": "custom",
                "message": f"No commits between {base_ref} and {head_ref}"}])
        number = core.state.next_number(full_name)
        now = core.state.now()
        rec: Record = {"id": core.state.new_id(), "number": number, "repo": repo["full_name"], "title": title,
                       "body": text_field(body.get("body"), "body", limit=65536), "state": "open",
                       "state_reason": None, "labels": [], "assignees": [], "user": actor, "created_at": now,
                       "updated_at": now, "closed_at": None, "via_app": actor == core.app.bot_login,
                       "pull": {"head_ref": head_ref, "head_owner": head_owner, "head_sha": head_sha,
                                "base_ref": base_ref, "base_sha": base_sha, "draft": bool(body.get("draft")),
                                "merged": False, "merged_at": None, "merge_commit_sha": None, "merged_by": None}}
        core.state.issues_of(full_name)[str(number)] = rec
        self.issues.emit_event(rec, "opened", actor)
        core.changed()
        return await self.get(full_name, number)

    def request_reviewers(self, full_name: str, number: int, body: Record, *, actor: str) -> Record:
        """``POST /pulls/{n}/requested_reviewers``: collaborators only, never the author (422 like GitHub)."""
        rec = self.core.state.pull(full_name, number)
        wanted = names_list(body.get("reviewers", []), "reviewers")
        collaborators = self.repos.collaborators(full_name)
        for login in wanted:
            if login.lower() == str(rec["user"]).lower():
                raise ApiError(422, "Review cannot be requested from pull request author.")
            if login.lower() not in collaborators:
                raise ApiError(422, "Reviews may only be requested from collaborators. One or more of the users "
                                    f"or teams you specified is not a collaborator of the {full_name} repository.")
        pending = rec["pull"].setdefault("requested_reviewers", [])
        for login in wanted:
            if login.lower() not in {name.lower() for name in pending}:
                pending.append(login)
                self.issues.emit_event(rec, "review_requested", actor,
                                       requested_reviewer=render.user(self.core.ctx, login))
        self.core.changed()
        return render.pull_request(self.core.ctx, rec)

    async def get(self, full_name: str, number: int) -> Record:
        """A pull request, with ``mergeable`` computed from the bare repo."""
        rec = self.core.state.pull(full_name, number)
        if rec["state"] == "open":
            rec["pull"]["mergeable"] = await gitrepos.is_mergeable(
                self.core.repo_git(full_name), base=rec["pull"]["base_ref"], head=rec["pull"]["head_sha"])
        return render.pull_request(self.core.ctx, rec)

    def find(self, full_name: str, *, state: str = "open", head: str | None = None, base: str | None = None,
             direction: str = "desc") -> list[Record]:
        """Pull requests filtered like ``GET /repos/{o}/{r}/pulls``."""
        if state not in ("open", "closed", "all"):
            raise ApiError.validation("PullRequest", "state")
        head_owner = head_ref = None
        if head:
            head_owner, _, head_ref = head.partition(":") if ":" in head else ("", "", head)
        out = []
        for rec in self.core.state.issues_of(full_name).values():
            pull = rec.get("pull")
            if not pull or (state != "all" and rec["state"] != state):
                continue
            if head_ref is not None and (pull["head_ref"] != head_ref
                                         or (head_owner and pull["head_owner"].lower() != head_owner.lower())):
                continue
            if base is not None and pull["base_ref"] != base:
                continue
            out.append(rec)
        out.sort(key=lambda r: r["number"], reverse=direction != "asc")
        return [render.pull_request(self.core.ctx, r) for r in out]

    async def update(self, full_name: str, number: int, changes: Record, *, actor: str) -> Record:
        """PATCH a pull request: title, body, state, base."""
        rec = self.core.state.pull(full_name, number)
        if "base" in changes:
            base = changes["base"]
            if not isinstance(base, str) or await gitrepos.rev_parse(self.core.repo_git(full_name),
                                                                     f"refs/heads/{base}") is None:
                raise ApiError.validation("PullRequest", "base")
            if base != rec["pull"]["base_ref"]:
                rec["pull"]["base_ref"] = base
                changes = {**changes, "_base_changed": True}
        if rec["pull"].get("merged") and changes.get("state") == "open":
            raise ApiError.validation("PullRequest", "state", "custom", "merged pull requests cannot be reopened")
        issue_changes = {k: v for k, v in changes.items() if k in ("title", "body", "state")}
        self.issues.update(full_name, number, issue_changes, actor=actor)
        return await self.get(full_name, number)

    async def merge(self, full_name: str, number: int, *, actor: str | None = None, sha: str | None = None,
                    merge_method: str = "merge", commit_title: str | None = None) -> Record:
        """Merge a pull request in the bare repo, emit ``pull_request.closed`` (merged) and the push."""
        core = self.core
        actor = actor or core.default_user
        rec = core.state.pull(full_name, number)
        pull = rec["pull"]
        if merge_method not in ("merge", "squash", "rebase"):
            raise ApiError.validation("PullRequest", "merge_method")
        if rec["state"] != "open":
            raise ApiError(405, "Pull Request is not mergeable")
        if sha is not None and sha != pull["head_sha"]:
            raise ApiError(409, "Head branch was modified. Review and try the merge again.")
        path = core.repo_git(full_name)
        async with self.pushes.lock:
            before = await gitrepos.rev_parse(path, f"refs/heads/{pull['base_ref']}")
            message = commit_title or f"Merge pull request #{number} from {pull['head_owner']}/{pull['head_ref']}"
            if merge_method != "merge":
                message = commit_title or f"{rec['title']} (#{number})"
            new_sha = await gitrepos.merge(path, base=pull["base_ref"], head=pull["head_sha"], message=message,
                                           method=merge_method)
        if new_sha is None or before is None:
            raise ApiError(405, "Pull Request is not mergeable")
        now = core.state.now()
        rec.update({"state": "closed", "closed_at": now, "updated_at": now})
        pull.update({"merged": True, "merged_at": now, "merge_commit_sha": new_sha, "merged_by": actor})
        self.issues.emit_event(rec, "closed", actor)
        await self.pushes.record(full_name, [{"before": before, "after": new_sha,
                                              "ref": f"refs/heads/{pull['base_ref']}"}], pusher=actor)
        for match in _CLOSING.finditer(rec.get("body") or ""):
            target = core.state.issues_of(full_name).get(match.group(1))
            if target and not target.get("pull") and target["state"] == "open":
                self.issues.update(full_name, target["number"], {"state": "closed", "state_reason": "completed"},
                                   actor=actor)
        core.changed()
        return {"sha": new_sha, "merged": True, "message": "Pull Request successfully merged"}

    async def files(self, full_name: str, number: int) -> list[Record]:
        """Files changed by a pull request."""
        pull = self.core.state.pull(full_name, number)["pull"]
        path = self.core.repo_git(full_name)
        base = pull.get("base_sha") or f"refs/heads/{pull['base_ref']}"
        if not pull.get("merged"):
            base = await gitrepos.rev_parse(path, f"refs/heads/{pull['base_ref']}") or base
        files = await gitrepos.changed_files(path, base=base, head=pull["head_sha"])
        repo = self.core.state.repo(full_name)["full_name"]
        return [render.diff_entry(self.core.ctx, repo, pull["head_sha"], f) for f in files]


class Reviews:
    """Pull request reviews and their inline comments."""

    def __init__(self, core: HubCore) -> None:
        self.core = core

    def create(self, full_name: str, number: int, body: Record, *, actor: str) -> Record:
        """Submit a review (APPROVE, REQUEST_CHANGES, COMMENT; pending without ``event``)."""
        core = self.core
        rec = core.state.pull(full_name, number)
        event = body.get("event")
        if event not in _REVIEW_STATES:
            raise ApiError.validation("PullRequestReview", "event")
        text = text_field(body.get("body"), "body", limit=65536) or ""
        comments = body.get("comments") or []
        if not isinstance(comments, list):
            raise ApiError(422, "Invalid request.\n\ncomments must be a list.")
        if event in ("REQUEST_CHANGES", "COMMENT") and not text and not comments:
            raise ApiError(422, "Unprocessable Entity", errors=[f"Review body is required for {event}"])
        if event in ("APPROVE", "REQUEST_CHANGES") and actor == rec["user"]:
            verb = "approve" if event == "APPROVE" else "request changes on"
            raise ApiError(422, "Unprocessable Entity", errors=[f"Can not {verb} your own pull request"])
        commit_id = body.get("commit_id") or rec["pull"]["head_sha"]
        now = core.state.now()
        review = {"id": core.state.new_id(), "repo": rec["repo"], "pull_number": number, "user": actor,
                  "body": text, "state": _REVIEW_STATES[event], "commit_id": commit_id,
                  "submitted_at": now if event else None}
        core.state.data["reviews"][str(review["id"])] = review
        created = []
        for item in comments:
            if not isinstance(item, dict) or not item.get("path") or not item.get("body"):
                raise ApiError.validation("PullRequestReviewComment", "path", "missing_field")
            c = {"id": core.state.new_id(), "repo": rec["repo"], "pull_number": number, "review_id": review["id"],
                 "path": item["path"], "line": item.get("line"), "side": item.get("side", "RIGHT"),
                 "position": item.get("position"), "body": item["body"], "user": actor, "commit_id": commit_id,
                 "created_at": now, "updated_at": now}
            core.state.data["review_comments"][str(c["id"])] = c
            created.append(c)
        rec["updated_at"] = now
        if event:
            repo = core.state.repo(full_name)
            payload = core.envelope(repo, actor, "submitted")
            payload["review"] = render.review(core.ctx, review)
            payload["pull_request"] = render.pull_request(core.ctx, rec)
            core.emit("pull_request_review", payload)
            for c in created:
                payload = core.envelope(repo, actor, "created")
                payload["comment"] = render.review_comment(core.ctx, c)
                payload["pull_request"] = render.pull_request(core.ctx, rec)
                core.emit("pull_request_review_comment", payload)
        core.changed()
        return render.review(core.ctx, review)

    def find(self, full_name: str, number: int) -> list[Record]:
        """Reviews of a pull request, oldest first."""
        rec = self.core.state.pull(full_name, number)
        return [render.review(self.core.ctx, r)
                for r in sorted(self.core.state.data["reviews"].values(), key=lambda r: r["id"])
                if r["repo"] == rec["repo"] and r["pull_number"] == number]

    def comments(self, full_name: str, number: int, *, review_id: int | None = None) -> list[Record]:
        """Inline review comments of a pull request (or of one of its reviews), oldest first."""
        rec = self.core.state.pull(full_name, number)
        if review_id is not None:
            review = self.core.state.by_id("reviews", review_id)
            if review["repo"] != rec["repo"] or review["pull_number"] != number:
                raise NotFoundError(f"review {review_id}")
        return [render.review_comment(self.core.ctx, c)
                for c in sorted(self.core.state.data["review_comments"].values(), key=lambda c: c["id"])
                if c["repo"] == rec["repo"] and c["pull_number"] == number
                and (review_id is None or c.get("review_id") == review_id)]
