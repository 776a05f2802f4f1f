"""Fakehub's routes, permission tables and the contract checker agree with GitHub's description."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentz_app.fakehub import FakeHub
from agentz_app.fakehub.contract import Exchange
from agentz_app.fakehub.grants import APP_ONLY, EVENT_GRANTS, NO_PERMISSION, OPERATION_GRANTS, normalise
from agentz_app.fakehub.server import create_app
from tests.contract.validator import ContractRecorder, GitHubContract


@pytest.fixture(scope="module")
def contract() -> GitHubContract:
    return GitHubContract.load()


def test_every_fakehub_api_route_is_a_documented_operation(contract: GitHubContract, tmp_path: Path) -> None:
    app = create_app(FakeHub(tmp_path))
    documented = {f"{op.method} {normalise(op.template)}" for op in contract.operations}
    routes = {f"{route.method} {normalise(route.resource.canonical)}" for route in app.router.routes()
              if route.resource is not None and not route.resource.canonical.startswith("/_fakehub")
              and route.method != "HEAD"}
    assert routes
    assert routes <= documented, sorted(routes - documented)


def test_every_vendored_operation_has_a_permission_and_is_open_to_installations(contract: GitHubContract) -> None:
    assert set(contract.operation_keys()) == set(OPERATION_GRANTS)
    closed = [key for key in contract.operation_keys() if OPERATION_GRANTS[key] not in ((APP_ONLY,), (NO_PERMISSION,))
              and contract.spec["operations"][key]["x-github"].get("enabledForGitHubApps") is False]
    assert closed == []


def test_permission_table_agrees_with_the_permissions_the_description_names(contract: GitHubContract) -> None:
    checked = 0
    for key in contract.operation_keys():
        if key.startswith("GET "):
            continue  # a read's description names permissions of optional fields, not of the call
        granted = {f"{name}:{level}" for name, level in OPERATION_GRANTS[key]}
        for hint in contract.spec["operations"][key].get("permissionHints", []):
            assert hint in granted, (key, hint, granted)
            checked += 1
    assert checked >= 1


def test_event_permissions_are_the_ones_github_documents(contract: GitHubContract) -> None:
    for event, grant in EVENT_GRANTS.items():
        documented = contract.webhook_permission(event)
        expected = None if grant is None else f"{grant[0]}:{grant[1]}"
        assert documented == expected, (event, documented, expected)


def test_the_checker_flags_unknown_operations_query_parameters_and_bodies(contract: GitHubContract) -> None:
    recorder = ContractRecorder(contract)
    recorder.exchange(Exchange("GET", "/repos/o/r/issues", {"labels": "a", "colour": "red"}, b"", 200, b"[]"))
    recorder.exchange(Exchange("POST", "/repos/o/r/pulls", {}, b'{"title": 1}', 201, None))
    recorder.exchange(Exchange("GET", "/repos/o/r/teleport", {}, b"", 200, b"{}"))
    recorder.exchange(Exchange("PUT", "/repos/o/r/issues/1/labels", {}, b'{"labels": []}', 200, b"[]"))
    report = recorder.report()
    assert "unknown query parameter 'colour'" in report
    assert "'labels'" not in report.split("colour")[0]
    assert "POST /repos/{owner}/{repo}/pulls: body" in report
    assert "GET /repos/o/r/teleport: no such operation" in report
    assert "PUT /repos/{owner}/{repo}/issues/{issue_number}/labels: body labels" in report


def test_the_checker_flags_incomplete_responses_and_webhooks(contract: GitHubContract) -> None:
    recorder = ContractRecorder(contract)
    recorder.exchange(Exchange("GET", "/repos/o/r/issues/1", {}, b"", 200, b'{"number": 1, "title": "t"}'))
    recorder.exchange(Exchange("POST", "/repos/o/r/check-runs", {}, b'{"name": "x", "head_sha": "a"}', 200, b"{}"))
    recorder.webhook("status", {"sha": "a"})
    recorder.webhook("issues", {"action": "teleported"})
    report = recorder.report()
    assert "GET /repos/{owner}/{repo}/issues/{issue_number} 200: (root): 'assignee' is a required property" in report
    assert "POST /repos/{owner}/{repo}/check-runs: answered 200, GitHub documents ['201']" in report
    assert "webhook status: (root): 'id' is a required property" in report
    assert "webhook issues.teleported: not in GitHub's description" in report


def test_a_refused_request_is_not_a_violation(contract: GitHubContract) -> None:
    recorder = ContractRecorder(contract)
    recorder.exchange(Exchange("POST", "/repos/o/r/pulls", {}, b'{"title": 1}', 422,
                               b'{"message": "Validation Failed", "documentation_url": "x"}'))
    assert recorder.violations == []
