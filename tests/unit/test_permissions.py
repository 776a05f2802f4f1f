"""The permission rule as a pure decision, and its settings."""

from __future__ import annotations

import pytest

from agentz_app.config import Settings
from agentz_app.errors import ConfigError
from agentz_app.github.events import User
from agentz_app.permissions import (
    NO_WRITE_ACCESS,
    OWN_APP,
    TRUSTED_BOT,
    UNKNOWN_PERMISSION,
    UNTRUSTED_BOT,
    WRITE_ACCESS,
    Actor,
    Permission,
    TrustPolicy,
    decide,
    may_steer,
)

POLICY = TrustPolicy(own_login="agent-z[bot]", trusted_bots=frozenset({"dependabot[bot]"}))


@pytest.mark.parametrize(
    ("actor", "permission", "allowed", "reason"),
    [
        (Actor("ada"), Permission("admin", "admin"), True, WRITE_ACCESS),
        (Actor("max"), Permission("write", "maintain"), True, WRITE_ACCESS),
        (Actor("wes"), Permission("write", "write"), True, WRITE_ACCESS),
        (Actor("cus"), Permission("write", "release-manager"), True, WRITE_ACCESS),  # a custom role based on write
        (Actor("tia"), Permission("read", "triage"), False, NO_WRITE_ACCESS),
        (Actor("rae"), Permission("read", "read"), False, NO_WRITE_ACCESS),
        (Actor("nia"), Permission("none", None), False, NO_WRITE_ACCESS),
        (Actor("unknown"), None, False, UNKNOWN_PERMISSION),
        (Actor("agent-z[bot]", bot=True), None, True, OWN_APP),
        (Actor("Agent-Z[bot]"), None, True, OWN_APP),
        (Actor("dependabot[bot]", bot=True), None, True, TRUSTED_BOT),
        (Actor("github-actions[bot]", bot=True), None, False, UNTRUSTED_BOT),
        # A bot's permission answer (were there one) never counts: bots pass only by name.
        (Actor("other-app[bot]", bot=True), Permission("admin", "admin"), False, UNTRUSTED_BOT),
        (Actor("renovate", bot=True), Permission("write", "write"), False, UNTRUSTED_BOT),
        (Actor(""), Permission("admin", "admin"), False, "no login"),
    ],
)
def test_may_steer(actor: Actor, permission: Permission | None, allowed: bool, reason: str) -> None:
    assert may_steer(actor, permission, POLICY) is allowed
    assert decide(actor, permission, POLICY).reason == reason


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ({"login": "alice", "type": "User"}, Actor("alice")),
        ({"login": "github-actions[bot]", "type": "Bot"}, Actor("github-actions[bot]", bot=True)),
        ({"login": "renovate", "type": "Bot"}, Actor("renovate", bot=True)),
        ({"login": "odd[bot]", "type": "User"}, Actor("odd[bot]", bot=True)),
        (None, Actor("")),
    ],
)
def test_actors_from_payload_users(user: object, expected: Actor) -> None:
    assert Actor.of(None if user is None else User.model_validate(user)) == expected


def test_only_people_are_looked_up() -> None:
    assert POLICY.needs_lookup(Actor("alice"))
    assert not POLICY.needs_lookup(Actor("dependabot[bot]", bot=True))
    assert not POLICY.needs_lookup(Actor("agent-z[bot]"))
    assert not POLICY.needs_lookup(Actor(""))


def test_settings_default_to_maintainers_and_no_trusted_bots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUSTED_BOTS", raising=False)
    monkeypatch.delenv("SCHEDULER_TRUST", raising=False)
    settings = Settings.load(None)
    assert (settings.trusted_bots, settings.scheduler_trust) == ([], "maintainers")
    assert TrustPolicy.from_settings(settings) == TrustPolicy("agent-z[bot]", frozenset())


def test_trusted_bots_is_a_comma_list_of_logins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_BOTS", "Dependabot[bot], renovate[bot]")
    assert Settings.load(None).trusted_bots == ["dependabot[bot]", "renovate[bot]"]


@pytest.mark.parametrize(("variable", "value"), [("TRUSTED_BOTS", "evil bot"), ("TRUSTED_BOTS", "a/b[bot]"),
                                                  ("SCHEDULER_TRUST", "everyone")])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        Settings.load(None)
    assert variable in str(info.value)
