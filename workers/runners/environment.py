"""The environment an agent subprocess runs with: scrubbed, scoped to its backend's provider."""

from __future__ import annotations

import os
from collections.abc import Mapping

from agentz_app.agent_credentials import backend_variables
from agentz_app.config import Settings, agent_variables_in
from agentz_app.procs import scrubbed_env

# Network and certificate settings every agent inherits from Agent-Z's process environment.
NETWORK_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS")


def provider_env(
    backend: str | None, settings: Settings | None = None, source: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The model-provider variables (API keys, model names, base URLs) ``backend``'s agents get.

    Read from ``settings`` (environment and ``.env`` at start) with ``source`` (default: this
    process's environment) on top; scoped to the backend: Claude gets Anthropic's, Codex OpenAI's,
    the scripted backend (or ``None``) only the shared ``AGENTZ_MODEL*``/``AGENTZ_SCRIPTED_*`` ones.
    """
    source = os.environ if source is None else source
    variables = {**(settings.agent_variables() if settings is not None else {}), **agent_variables_in(source)}
    scoped = backend_variables(backend or "scripted", variables)
    scoped.update({key: source[key] for key in NETWORK_VARIABLES if source.get(key)})
    return scoped


def _secret_values(settings: Settings) -> set[str]:
    values: set[str] = set()
    if settings.github_webhook_secret is not None:
        values.add(settings.github_webhook_secret.get_secret_value())
    if settings.github_private_key is not None:
        values.add(settings.github_private_key.get_secret_value())
    values.add(settings.database_url)
    return {value for value in values if len(value) >= 6}


def agent_env(
    settings: Settings,
    extra: Mapping[str, str] | None = None,
    *,
    base: Mapping[str, str] | None = None,
    backend: str | None = None,
) -> dict[str, str]:
    """The scrubbed environment an agent subprocess gets.

    Basics (PATH, locale) are inherited from ``base`` (default: this process), plus the
    model-provider variables of ``backend`` only (:func:`provider_env`; none without a backend);
    ``extra`` is laid on top, and every secret variable (App key, webhook secret, DATABASE_URL,
    GitHub tokens) is removed, as is any variable whose value equals one of Agent-Z's own secrets.
    """
    merged = provider_env(backend, settings, base)
    merged.update(extra or {})
    env = scrubbed_env(merged, base=base)
    secrets = _secret_values(settings)
    return {key: value for key, value in env.items() if value not in secrets}
