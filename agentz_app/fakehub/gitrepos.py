"""Real bare git repositories behind the fake GitHub, with a push-notification hook."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from agentz_app.procs import ProcessResult, run_process

_IDENTITY = {
    "GIT_AUTHOR_NAME": "fakehub",
    "GIT_AUTHOR_EMAIL": "fakehub@users.noreply.invalid",
    "GIT_COMMITTER_NAME": "fakehub",
    "GIT_COMMITTER_EMAIL": "fakehub@users.noreply.invalid",
}

ZERO_SHA = "0" * 40

HOOK_TEMPLATE = '''#!{python}
"""Tell the fake GitHub about the refs this push updated."""
import json
import os
import sys
import urllib.request

URL = {url!r}
REPOSITORY = {repository!r}

updates = []
for line in sys.stdin:
    parts = line.split()
    if len(parts) == 3:
        updates.append({{"before": parts[0], "after": parts[1], "ref": parts[2]}})
body = json.dumps({{"repository": REPOSITORY, "updates": updates,
                   "pusher": os.environ.get("FAKEHUB_PUSHER", "")}}).encode()
request = urllib.request.Request(URL, data=body, headers={{"Content-Type": "application/json"}})
try:
    urllib.request.urlopen(request, timeout=60).read()
except Exception as exc:  # the push itself succeeded; only the notification failed
    print("fakehub: push notification failed:", exc, file=sys.stderr)
'''


class GitError(RuntimeError):
    """A git command failed."""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(_IDENTITY)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    return env


async def git(repo: Path, *args: str, check: bool = True, work_tree: Path | None = None,
              timeout: float = 60.0) -> ProcessResult:
    """Run ``git`` against the bare repository ``repo``."""
    argv = ["git", f"--git-dir={repo}"]
    if work_tree is not None:
        argv.append(f"--work-tree={work_tree}")
    result = await run_process([*argv, *args], env=_env(), timeout=timeout)
    if check and result.exit_code != 0:
        raise GitError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def repo_path(root: Path, full_name: str) -> Path:
    """Where the bare repository of ``full_name`` lives under ``root``."""
    owner, _, name = full_name.partition("/")
    return root / owner / f"{name}.git"


def write_hook(repo: Path, *, notify_url: str, full_name: str) -> None:
    """Install (or refresh) the ``post-receive`` hook that reports pushes to ``notify_url``."""
    hook = repo / "hooks" / "post-receive"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(HOOK_TEMPLATE.format(python=sys.executable, url=notify_url, repository=full_name), "utf-8")
    hook.chmod(0o755)


async def create_bare_repo(repo: Path, files: dict[str, str], *, default_branch: str = "main",
                           message: str = "Initial commit") -> str | None:
    """Create a bare repository whose default branch holds ``files``; return the commit SHA."""
    await asyncio.to_thread(_make_parent, repo)
    result = await run_process(["git", "init", "--bare", "-q", "-b", default_branch, str(repo)], env=_env())
    if result.exit_code != 0:
        raise GitError(f"git init failed: {result.stderr.strip()}")
    if not files:
        return None
    with tempfile.TemporaryDirectory(prefix="fakehub-init-") as tmp:
        work = Path(tmp)
        await asyncio.to_thread(_write_files, work, files)
        await git(repo, "add", "-A", work_tree=work)
        await git(repo, "commit", "-q", "-m", message, work_tree=work)
    await asyncio.to_thread((repo / "index").unlink, missing_ok=True)
    return await rev_parse(repo, f"refs/heads/{default_branch}")


def _make_parent(repo: Path) -> None:
    """Create the folder ``repo`` will live in; refuse a repository that already exists."""
    if repo.exists():
        raise GitError(f"{repo} already exists")
    repo.parent.mkdir(parents=True, exist_ok=True)


def _write_files(work: Path, files: dict[str, str]) -> None:
    """Write ``files`` (relative path -> text) under ``work``, refusing paths that leave it."""
    for rel, content in files.items():
        target = (work / rel).resolve()
        if not target.is_relative_to(work.resolve()) or rel.startswith("/"):
            raise GitError(f"file path escapes the repository: {rel}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, "utf-8")


async def rev_parse(repo: Path, ref: str) -> str | None:
    """The commit SHA ``ref`` points at, or None."""
    result = await git(repo, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False)
    return result.stdout.strip() or None if result.exit_code == 0 else None


async def commit_exists(repo: Path, sha: str) -> bool:
    """Whether ``sha`` names a commit in the repository."""
    return await rev_parse(repo, sha) is not None


async def commits_between(repo: Path, before: str, after: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """Commits reachable from ``after`` but not ``before`` (oldest first), as push payload items."""
    spec = after if before == ZERO_SHA else f"{before}..{after}"
    result = await git(repo, "log", f"--max-count={limit}", "--reverse", "--format=%H%x00%an%x00%ae%x00%cI%x00%B%x1e",
                       spec, check=False)
    commits = []
    for chunk in result.stdout.split("\x1e"):
        parts = chunk.strip("\n").split("\x00")
        if len(parts) < 5:
            continue
        sha, name, email, date, message = parts[:5]
        changes = await git(repo, "diff-tree", "--no-commit-id", "--name-status", "-r", "--root", sha, check=False)
        added: list[str] = []
        removed: list[str] = []
        modified: list[str] = []
        for line in changes.stdout.splitlines():
            status, _, path = line.partition("\t")
            {"A": added, "D": removed}.get(status[:1], modified).append(path)
        commits.append({"id": sha, "message": message.strip(), "timestamp": date,
                        "author": {"name": name, "email": email}, "committer": {"name": name, "email": email},
                        "added": added, "removed": removed, "modified": modified, "distinct": True})
    return commits


async def merge(repo: Path, *, base: str, head: str, message: str, method: str = "merge") -> str | None:
    """Merge ``head`` into branch ``base`` inside the bare repo; return the new SHA, None on conflict."""
    base_sha = await rev_parse(repo, f"refs/heads/{base}")
    head_sha = await rev_parse(repo, head)
    if base_sha is None or head_sha is None:
        raise GitError(f"cannot merge {head} into {base}: missing ref")
    tree = await git(repo, "merge-tree", "--write-tree", base_sha, head_sha, check=False)
    if tree.exit_code != 0:
        return None
    tree_sha = tree.stdout.split()[0]
    parents = ["-p", base_sha] if method in ("squash", "rebase") else ["-p", base_sha, "-p", head_sha]
    commit = await git(repo, "commit-tree", tree_sha, *parents, "-m", message)
    new_sha = commit.stdout.strip()
    await git(repo, "update-ref", f"refs/heads/{base}", new_sha, base_sha)
    return new_sha


async def is_mergeable(repo: Path, *, base: str, head: str) -> bool:
    """Whether ``head`` merges into ``base`` without conflicts."""
    result = await git(repo, "merge-tree", "--write-tree", f"refs/heads/{base}", head, check=False)
    return result.exit_code == 0


async def merge_base(repo: Path, a: str, b: str) -> str | None:
    """The merge base of two commits."""
    result = await git(repo, "merge-base", a, b, check=False)
    return result.stdout.strip() or None


async def changed_files(repo: Path, *, base: str, head: str) -> list[dict[str, Any]]:
    """Files changed by ``head`` since its merge base with ``base`` (the pull request files)."""
    mb = await merge_base(repo, base, head) or base
    numstat = await git(repo, "diff", "--numstat", mb, head)
    status = await git(repo, "diff", "--name-status", mb, head)
    kinds = {"A": "added", "D": "removed", "M": "modified", "R": "renamed"}
    names = {}
    for line in status.stdout.splitlines():
        parts = line.split("\t")
        names[parts[-1]] = kinds.get(parts[0][:1], "modified")
    files: list[dict[str, Any]] = []
    for line in numstat.stdout.splitlines():
        adds, dels, path = line.split("\t", 2)
        patch = await git(repo, "diff", mb, head, "--", path)
        a = int(adds) if adds.isdigit() else 0
        d = int(dels) if dels.isdigit() else 0
        blob = await git(repo, "rev-parse", f"{head}:{path}", check=False)
        files.append({"sha": blob.stdout.strip() or None, "filename": path, "status": names.get(path, "modified"),
                      "additions": a, "deletions": d, "changes": a + d,
                      "patch": patch.stdout.split("\n@@", 1)[-1] if "@@" in patch.stdout else ""})
    for f in files:
        patch_text = str(f["patch"])
        if patch_text and not patch_text.startswith("@@"):
            f["patch"] = "@@" + patch_text
    return files


async def export_commit(repo: Path, sha: str, dest: Path) -> None:
    """Check out ``sha`` into the empty directory ``dest`` (no .git inside)."""
    await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    await git(repo, "read-tree", f"--index-output={dest}/.fakehub-index", sha)
    env_index = dest / ".fakehub-index"
    result = await run_process(
        ["git", f"--git-dir={repo}", f"--work-tree={dest}", "checkout-index", "-a", "-f"],
        env={**_env(), "GIT_INDEX_FILE": str(env_index)},
    )
    await asyncio.to_thread(env_index.unlink, missing_ok=True)
    if result.exit_code != 0:
        raise GitError(f"git checkout-index failed: {result.stderr.strip()}")


def remove_tree(path: Path) -> None:
    """Delete a directory tree, ignoring errors."""
    shutil.rmtree(path, ignore_errors=True)
