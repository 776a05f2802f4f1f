"""GitHub's refusals as the fake answers them, and the request-field checks shared by resources."""

from __future__ import annotations

from typing import Any

from agentz_app.fakehub.state import Record


class ApiError(Exception):
    """An error answered to the client with GitHub's error body."""

    def __init__(self, status: int, message: str, *, errors: list[Record] | list[str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}
        super().__init__(f"{status} {message}")

    @classmethod
    def validation(cls, resource: str, field: str, code: str = "invalid", message: str | None = None) -> ApiError:
        """A 422 Validation Failed with one error item."""
        item: Record = {"resource": resource, "field": field, "code": code}
        if message:
            item["message"] = message
        return cls(422, "Validation Failed", errors=[item])


def text_field(value: Any, name: str, *, required: bool = False, limit: int | None = None) -> str | None:
    """A request's optional text field, refused (422) when it is no string or longer than ``limit``."""
    if value is None:
        if required:
            raise ApiError.validation("Issue", name, "missing_field")
        return None
    if not isinstance(value, str):
        raise ApiError(422, f"Invalid request.\n\n{name} is not a string.")
    if limit is not None and len(value) > limit:
        raise ApiError(422, f"Invalid request.\n\n{name} is too long (maximum is {limit} characters).")
    return value


def names_list(value: Any, name: str) -> list[str]:
    """Label or assignee names from a JSON list (or ``{name: [...]}``), validated."""
    if isinstance(value, dict) and name in value:
        value = value[name]
    if not isinstance(value, list) or not all(isinstance(v, str | dict) for v in value):
        raise ApiError(422, f"Invalid request.\n\n{name} must be a list of strings.")
    return [v["name"] if isinstance(v, dict) else v for v in value]
