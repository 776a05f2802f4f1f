"""Which model credentials and options each agent backend gets, and how to tell they are present.

Pure data and functions over the agent variables of :meth:`Settings.agent_variables` (read from
the environment and ``.env``). Claude's agents get Anthropic's variables, Codex's OpenAI's,
OpenCode's those of the providers it speaks to; the scripted backend gets none. Every backend
gets the ``AGENTZ_MODEL*`` variables (model names, a custom model endpoint and its key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agentz_app.config import Settings

# Variables passed to every backend's agents: the model name(s) and a custom model endpoint.
SHARED_PREFIXES = ("AGENTZ_MODEL", "AGENTZ_SCRIPTED_")

# Variable name prefixes (or whole names) each backend's agents receive.
BACKEND_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "claude": ("ANTHROPIC_", "CLAUDE_CODE_"),
    "codex": ("OPENAI_", "CODEX_API_KEY"),
    "opencode": ("ANTHROPIC_", "OPENAI_", "OPENROUTER_"),
    "scripted": (),
}

# Any one of these (non-empty) lets the backend reach a model.
CREDENTIALS: Mapping[str, tuple[str, ...]] = {
    "claude": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK",
               "CLAUDE_CODE_USE_VERTEX"),
    "codex": ("OPENAI_API_KEY", "CODEX_API_KEY"),
    "opencode": ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY"),
}

# A CLI login folder of this host that may be reused: the setting naming it, the variable the CLI
# reads its folder from, and the credential files inside it the agent's private folder links to.
@dataclass(frozen=True)
class LoginFolder:
    setting: str
    cli_variable: str
    files: tuple[str, ...]
    login_command: str


LOGIN_FOLDERS: Mapping[str, LoginFolder] = {
    "claude": LoginFolder("AGENT_CLAUDE_LOGIN_DIR", "CLAUDE_CONFIG_DIR", (".credentials.json",), "claude /login"),
    "codex": LoginFolder("AGENT_CODEX_LOGIN_DIR", "CODEX_HOME", ("auth.json",), "codex login"),
}

REAL_BACKENDS = ("claude", "codex", "opencode")


def backend_variables(backend: str, variables: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``variables`` that ``backend``'s agents may see."""
    prefixes = (*SHARED_PREFIXES, *BACKEND_PREFIXES.get(backend, ()))
    return {key: value for key, value in variables.items() if key.upper().startswith(prefixes)}


def login_dir(settings: Settings, backend: str) -> Path | None:
    """The configured CLI login folder to reuse for ``backend``, if any."""
    if backend == "claude":
        return settings.agent_claude_login_dir
    if backend == "codex":
        return settings.agent_codex_login_dir
    return None


def credential_source(settings: Settings, backend: str, variables: Mapping[str, str] | None = None) -> str | None:
    """What gives ``backend`` access to a model (a variable's name or the login folder), or None."""
    if backend not in CREDENTIALS:
        return "no model needed"
    found = backend_variables(backend, settings.agent_variables() if variables is None else variables)
    if found.get("AGENTZ_MODEL_BASE_URL"):
        return "AGENTZ_MODEL_BASE_URL"
    for name in CREDENTIALS[backend]:
        if found.get(name):
            return name
    folder = login_dir(settings, backend)
    login = LOGIN_FOLDERS.get(backend)
    if folder is not None and login is not None and any((folder / name).is_file() for name in login.files):
        return login.setting
    return None


def backends_in_use(settings: Settings, roles: tuple[str, ...]) -> list[str]:
    """The agent backends the given roles call (scheduler, planner's task lead, worker's developer/reviewer)."""
    agent_roles = {"scheduler": ("scheduler",), "planner": ("task_lead",), "worker": ("developer", "reviewer")}
    wanted = [settings.backend_for(agent_role) for role in roles for agent_role in agent_roles.get(role, ())]
    return list(dict.fromkeys(wanted))
