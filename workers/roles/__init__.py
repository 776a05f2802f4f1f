"""Agent roles: prompts and validated output schemas."""
