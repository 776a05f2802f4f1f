"""A repository's own configuration at work: read it, report it, run its setup and test commands.

The file is read by trusted git from the run's mirror, at the default branch's head just
fetched (the same fetch every run starts with), as a blob: nothing is checked out or run.
Its git object id is its ETag: an unchanged file is not parsed again. An invalid file gets
a failing ``Agent-Z / config`` check run on that commit and the host's settings apply.

Setup and test commands come from whoever can push to the default branch: they run like
an agent, in the agent sandbox (:meth:`workers.sandbox.Sandbox.confine`) with the run's
working copy, the developer's private home and the network allowlist, and without any
model credential; their output goes to the run log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gidgethub.abc import GitHubAPI

from agentz_app.config import Settings
from agentz_app.errors import AgentTimeout, AgentZError
from agentz_app.logs import get_logger
from agentz_app.procs import run_process
from agentz_app.repo_config import (
    CONFIG_PATH,
    MAX_CONFIG_BYTES,
    ConfigProblem,
    StoredConfig,
    config_check_payload,
    config_from,
    save_config,
    stored_config,
)
from agentz_app.secrets import Redactor
from agentz_app.store.db import Database
from agentz_app.untrusted import UNTRUSTED_NOTICE, untrusted_block
from workers.gitops import git, git_out
from workers.runners.cli import agent_home
from workers.runners.logfile import run_log
from workers.runners.registry import agent_env
from workers.sandbox import Confinement, Sandbox
from workers.worktrees import Worktrees

log = get_logger("agentz.repo_setup")

TAIL_LINES = 40
_MODE_FILE = ("100644", "100755")


async def read_config_file(mirror: Path, commit: str) -> tuple[str | None, bytes | None, list[ConfigProblem]]:
    """(blob id, content, problems) of the config file in ``commit`` of ``mirror``; (None, None, []) when absent."""
    listing = (await git("ls-tree", "-z", commit, "--", CONFIG_PATH, cwd=mirror)).stdout.strip("\0")
    if not listing:
        return None, None, []
    info, _, _ = listing.partition("\t")
    mode, kind, blob = info.split()
    if kind != "blob" or mode not in _MODE_FILE:
        return blob, None, [ConfigProblem(None, "must be a regular file (not a symlink or a folder)")]
    size = int(await git_out("cat-file", "-s", blob, cwd=mirror))
    if size > MAX_CONFIG_BYTES:
        return blob, None, [ConfigProblem(None, f"the file is {size:,} bytes; the limit is {MAX_CONFIG_BYTES:,}")]
    content = (await git("cat-file", "blob", blob, cwd=mirror)).stdout
    return blob, content.encode("utf-8", errors="surrogateescape"), []


async def load_repo_config(worktrees: Worktrees, db: Database, repo: str, base: str, *, gh: GitHubAPI) -> StoredConfig:
    """The configuration at the head of ``base`` in the run's (just fetched) mirror, stored for every role.

    A file whose object id is the stored one is not parsed again. A newly invalid file gets
    a failing ``Agent-Z / config`` check run on the commit (once), a fixed one a passing one.
    """
    mirror = worktrees.mirror_path(repo)
    commit = await git_out("rev-parse", "--verify", f"refs/remotes/origin/{base}^{{commit}}", cwd=mirror)
    stored = await db.run(stored_config, db, repo)
    listing = (await git("ls-tree", commit, "--", CONFIG_PATH, cwd=mirror)).stdout.split()
    blob_now = listing[2] if len(listing) >= 3 else None
    if stored is not None and stored.blob_sha == blob_now:
        if stored.commit_sha != commit:
            stored = await db.run(save_config, db, repo, commit_sha=commit, blob_sha=blob_now,
                                  config=stored.config, problems=stored.problems)
            await report_config(gh, db, stored)  # still invalid: fail the new head too
        return await db.run(stored_config, db, repo) or stored
    blob, content, problems = await read_config_file(mirror, commit)
    config, parse_problems = config_from(content)
    problems += parse_problems
    stored = await db.run(save_config, db, repo, commit_sha=commit, blob_sha=blob, config=config,
                          problems=problems)
    if problems:
        log.warning("invalid repository configuration; using the host's settings", repo=repo, commit=commit,
                    problems=len(problems))
    await report_config(gh, db, stored)
    return await db.run(stored_config, db, repo) or stored


async def report_config(gh: GitHubAPI, db: Database, stored: StoredConfig) -> None:
    """Post the ``Agent-Z / config`` check: failing for an invalid file, passing once it is fixed. Best effort."""
    if stored.valid and stored.reported_sha is None:
        return
    if not stored.valid and stored.reported_sha == stored.commit_sha:
        return
    payload = config_check_payload(stored.commit_sha, stored.problems)
    try:
        await gh.post(f"/repos/{stored.repo}/check-runs", data=payload)
    except AgentZError as exc:
        log.warning("could not report the configuration check", repo=stored.repo, error=str(exc))
        return
    await db.run(save_config, db, stored.repo, commit_sha=stored.commit_sha, blob_sha=stored.blob_sha,
                 config=stored.config, problems=stored.problems,
                 reported_sha=None if stored.valid else stored.commit_sha, keep_reported=False)


# Setup and test commands ----------------------------------------------------------


@dataclass(frozen=True)
class CommandOutcome:
    """How one repository command ended."""

    command: str
    exit_code: int
    output: str  # the tail of stdout and stderr, redacted
    timed_out: bool = False

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


async def run_repo_command(
    settings: Settings,
    command: str,
    workdir: Path,
    *,
    run_id: str,
    log_name: str,
    read_only: Sequence[Path] = (),
    extra_env: Mapping[str, str] | None = None,
) -> CommandOutcome:
    """Run ``command`` with ``sh -c`` in the agent sandbox of ``workdir``; its output goes to the run log."""
    home = agent_home(settings.state_dir, settings.backend_for("developer"), workdir)
    env = agent_env(settings, {**(extra_env or {}), "HOME": str(home)})
    spec = Confinement(await asyncio.to_thread(workdir.resolve), home, tuple(read_only), frozenset(), env)
    redact = Redactor.from_settings(settings)
    with run_log(settings, run_id, log_name) as sink:
        sink(f"$ {command}")
        try:
            async with Sandbox(settings).confine(["/bin/sh", "-c", command], spec) as confined:
                process = await run_process(confined.args, cwd=workdir, env=confined.env,
                                            timeout=settings.agent_timeout_seconds, on_line=sink)
        except AgentTimeout:
            sink(f"timed out after {settings.agent_timeout_seconds:g} s")
            return CommandOutcome(command, -1, f"timed out after {settings.agent_timeout_seconds:g} s",
                                  timed_out=True)
        sink(f"exit {process.exit_code}")
    lines = [line for line in (process.stdout + "\n" + process.stderr).splitlines() if line.strip()]
    return CommandOutcome(command, process.exit_code, redact("\n".join(lines[-TAIL_LINES:])))


async def run_setup(
    settings: Settings,
    commands: Sequence[str],
    workdir: Path,
    *,
    run_id: str,
    read_only: Sequence[Path] = (),
    extra_env: Mapping[str, str] | None = None,
) -> CommandOutcome | None:
    """Run the setup commands in order; the first that fails is returned (None: all passed)."""
    for command in commands:
        outcome = await run_repo_command(settings, command, workdir, run_id=run_id, log_name="setup",
                                         read_only=read_only, extra_env=extra_env)
        if not outcome.passed:
            return outcome
    return None


def failure_reason(kind: str, outcome: CommandOutcome) -> str:
    """``kind`` command failed: the command, its exit and the tail of its output.

    Shown in the status comment: command and output sit in a code block they cannot close, so
    they can neither mention anyone nor add markup.
    """
    how = "timed out" if outcome.timed_out else f"exit {outcome.exit_code}"
    shown = f"$ {outcome.command[:1000]}\n{outcome.output[-3000:]}".replace("```", "' ' '")
    return f"{kind} command failed ({how}):\n```text\n{shown}\n```"


def local_test_prompt(outcome: CommandOutcome) -> str:
    """Ask the developer session to make the repository's local test command pass."""
    how = "timed out" if outcome.timed_out else f"exited with {outcome.exit_code}"
    return "\n".join([
        f"The repository's test command `{outcome.command}` {how} on your change. Fix the cause so it passes.",
        "", UNTRUSTED_NOTICE, "",
        "Its output (the end):",
        untrusted_block(outcome.output, source="local test output", author="test command",
                        author_label="output of a command run on the change, not a person"),
        "", "Edit files directly; do not commit or push. End with a short summary of the fix.",
    ])

