"""app-manifest.yml asks for exactly the permissions and events the code uses.

The REST calls are read from the source (``gh.getitem(f"/repos/{repo}/...")`` and the
``url = f"..."`` they use), matched to GitHub's documented operations, and mapped to the
permission each needs (``agentz_app.fakehub.grants``, itself checked against GitHub's
description in ``test_description.py``). Calls whose URL comes from a payload, and git
itself, are listed by hand below.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from agentz_app.fakehub.grants import APP_ONLY, EVENT_GRANTS, LEVELS, NO_PERMISSION, OPERATION_GRANTS, Grant
from agentz_app.setup import load_manifest, manifest_for_settings
from tests.contract.validator import GitHubContract

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p for folder in ("agentz_app", "workers") for p in (ROOT / folder).rglob("*.py")
           if "fakehub" not in p.parts and "demo" not in p.parts]
MANIFEST = ROOT / "app-manifest.yml"

# Calls the scan cannot see: their URL comes from a webhook payload, or they are not REST.
DOCUMENTED_USES: dict[str, Grant] = {
    # commands.py and ingress/triggers.py reply at the payload's issue comments_url.
    "POST /repos/{owner}/{repo}/issues/{issue_number}/comments": ("issues", "write"),
    # workers/worktrees.py pushes the run's branch over git with the installation token.
    "git push": ("contents", "write"),
    # CI-fix feedback downloads failing GitHub Actions jobs' logs (GET .../actions/jobs/{job_id}/logs).
    "GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs": ("actions", "read"),
}
_CALL = re.compile(r"\.(getitem|getiter|getstatus|post|patch|put|delete)\(\s*f?\"(/[^\"]+)\"")
_URL_ASSIGNMENT = re.compile(r"(?:\b\w*url\s*=|\breturn)\s*f?\"(/repos/[^\"]+|/app/[^\"]+)\"")
_METHOD = {"getitem": "GET", "getiter": "GET", "getstatus": "GET", "post": "POST", "patch": "PATCH", "put": "PUT",
           "delete": "DELETE"}


def concrete(template: str) -> str:
    """A URL as written in the code with every interpolation made a plausible value."""
    path = template.split("?", 1)[0]
    if not re.match(r"^/repos/\{[^}]*\}/\{", path):
        path = re.sub(r"^/repos/\{[^}]*\}(?=/|$)", "/repos/owner/repo", path)  # {run.repo} is owner/name
    return re.sub(r"\{[^}]*\}", "x", path)


def calls_in_code(contract: GitHubContract) -> dict[str, list[str]]:
    """``METHOD /template`` of every REST call the code makes, with where it is made."""
    found: dict[str, list[str]] = {}
    for source in SOURCES:
        text = source.read_text("utf-8")
        candidates = [(_METHOD[m[1]], m[2]) for m in _CALL.finditer(text)]
        candidates += [("GET", m[1]) for m in _URL_ASSIGNMENT.finditer(text)]
        for method, url in candidates:
            matched = contract.match(method, concrete(url))
            assert matched is not None, f"{source.relative_to(ROOT)}: {method} {url} is not a documented operation"
            found.setdefault(matched[0].key, []).append(str(source.relative_to(ROOT)))
    return found


def strongest(grants: list[Grant]) -> dict[str, str]:
    """The highest level needed of each permission."""
    needed: dict[str, str] = {}
    for name, level in grants:
        if (name, level) in (APP_ONLY, NO_PERMISSION):
            continue
        if LEVELS[level] > LEVELS.get(needed.get(name, "none"), 0):
            needed[name] = level
    return needed


def handled_events() -> set[str]:
    """Events some webhook router registers a handler for."""
    events = set()
    for source in SOURCES:
        events |= set(re.findall(r"router\.register\(\"(\w+)\"", source.read_text("utf-8")))
    return events


@pytest.fixture(scope="module")
def manifest() -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load(MANIFEST.read_text("utf-8"))
    return data


def default_events(manifest: dict[str, object]) -> list[str]:
    """The manifest's ``default_events`` list."""
    events = manifest["default_events"]
    assert isinstance(events, list)
    return [str(e) for e in events]


def test_the_scan_finds_the_calls_we_know_we_make() -> None:
    calls = calls_in_code(GitHubContract.load())
    for key in ("POST /repos/{owner}/{repo}/check-runs", "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}",
                "POST /repos/{owner}/{repo}/pulls", "GET /repos/{owner}/{repo}/commits/{ref}/statuses",
                "GET /repos/{owner}/{repo}/collaborators/{username}/permission",
                "POST /app/hook/deliveries/{delivery_id}/attempts"):
        assert key in calls, key


def test_manifest_permissions_are_exactly_what_the_rest_calls_and_events_need(manifest: dict[str, object]) -> None:
    calls = calls_in_code(GitHubContract.load())
    uses = [OPERATION_GRANTS[key][0] for key in calls] + list(DOCUMENTED_USES.values())
    uses += [g for e in default_events(manifest) if (g := EVENT_GRANTS.get(e)) is not None]
    needed = strongest(uses)
    needed.setdefault("metadata", "read")
    assert manifest["default_permissions"] == needed


def test_manifest_subscribes_to_exactly_the_events_the_routers_handle(manifest: dict[str, object]) -> None:
    always_delivered = {e for e, grant in EVENT_GRANTS.items() if grant is None}
    assert set(default_events(manifest)) == handled_events() - always_delivered


def test_workflows_write_is_asked_for_only_when_agents_may_change_workflows() -> None:
    template = load_manifest(MANIFEST)
    assert "workflows" not in manifest_for_settings(template, allow_workflow_changes=False)["default_permissions"]
    allowed = manifest_for_settings(template, allow_workflow_changes=True)
    assert allowed["default_permissions"]["workflows"] == "write"
    assert "workflows" not in template["default_permissions"]  # the template itself is left alone
