"""Slash-command parsing and the pure permission and loop-prevention rules."""

from __future__ import annotations

from typing import Any

import pytest

from agentz_app.commands import can_write, ignores_comment, mentions_app
from agentz_app.config import Settings
from agentz_app.domain.commands import Command, parse_command, refusal_text
from agentz_app.github.events import Comment


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/agent-z run", Command("run", "", "/agent-z run")),
        ("/AGENT-Z Run", Command("run", "", "/AGENT-Z Run")),
        ("  /agent-z cancel  ", Command("cancel", "", "/agent-z cancel")),
        ("/agent-z retry please", Command("retry", "please", "/agent-z retry please")),
        ("Looks good.\n/agent-z plan\nthanks", Command("plan", "", "/agent-z plan")),
        ("/agent-z status\n/agent-z run", Command("status", "", "/agent-z status")),
        ("/agent-z", Command("unknown", "", "/agent-z")),
        ("/agent-z deploy", Command("unknown", "", "/agent-z deploy")),
    ],
)
def test_commands_are_recognised(body: str, expected: Command) -> None:
    assert parse_command(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        "",
        "please run /agent-z run later",
        "> /agent-z run",
        "```\n/agent-z run\n```",
        "Type `/agent-z run` to start",
        "/agent-zed run",
        "/agentz run",
    ],
)
def test_text_that_is_not_a_command(body: str) -> None:
    assert parse_command(body) is None


@pytest.fixture
def app_settings() -> Settings:
    return Settings.load(None, github_app_id=42, github_app_slug="agent-z")


@pytest.mark.parametrize(
    ("comment", "ignored"),
    [
        ({"user": {"login": "alice", "type": "User"}}, False),
        ({"user": {"login": "agent-z[bot]", "type": "Bot"}}, True),
        ({"user": {"login": "Agent-Z[bot]", "type": "User"}}, True),
        ({"user": {"login": "alice", "type": "User"}, "performed_via_github_app": {"id": 42}}, True),
        ({"user": {"login": "alice", "type": "User"}, "performed_via_github_app": {"id": 7}}, False),
        ({"user": {"login": "dependabot[bot]", "type": "Bot"}}, True),
        ({"user": {"login": "renovate", "type": "Bot"}}, True),
    ],
)
def test_own_and_bot_comments_are_ignored(app_settings: Settings, comment: dict[str, Any], ignored: bool) -> None:
    assert ignores_comment(Comment.model_validate({"id": 1, **comment}), app_settings) is ignored


@pytest.mark.parametrize(
    ("answer", "allowed"),
    [
        ({"permission": "admin", "role_name": "admin"}, True),
        ({"permission": "write", "role_name": "maintain"}, True),
        ({"permission": "write", "role_name": "write"}, True),
        ({"permission": "read", "role_name": "triage"}, False),
        ({"permission": "read", "role_name": "read"}, False),
        ({"permission": "none", "role_name": None}, False),
        ({}, False),
    ],
)
def test_write_maintain_and_admin_may_command(answer: dict[str, Any], allowed: bool) -> None:
    assert can_write(answer) is allowed


def test_refusal_is_polite_and_explains_why() -> None:
    text = refusal_text("mallory", "read")
    assert "@mallory" in text
    assert "write, maintain or admin" in text
    assert "`read`" in text


def test_fix_is_a_command_with_its_text() -> None:
    command = parse_command("Thanks!\n/agent-z fix rename speed to speed_limit")
    assert command is not None
    assert (command.name, command.args) == ("fix", "rename speed to speed_limit")
    assert parse_command("```\n/agent-z fix inside code\n```") is None


def test_a_mention_counts_only_in_prose() -> None:
    assert mentions_app("@agent-z please rename this", "agent-z")
    assert mentions_app("cc @Agent-Z[bot]", "agent-z")
    assert not mentions_app("`@agent-z` in code", "agent-z")
    assert not mentions_app("> @agent-z quoted", "agent-z")
    assert not mentions_app("@agent-zebra is someone else", "agent-z")
    assert not mentions_app("@agent-z anything", "")
