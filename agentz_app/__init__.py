"""Agent-Z: a self-hosted GitHub App that turns issues into reviewed pull requests."""

__version__ = "0.1.0"
