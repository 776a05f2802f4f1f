"""Claim names: what an issue, a file, a module or a whole repository is called in the claims table."""

from __future__ import annotations

from collections.abc import Iterable

from agentz_app.errors import StoreError

# The module name of a whole-repository claim, and directories whose children are the packages.
WHOLE_REPOSITORY = "*"
_SOURCE_ROOTS = frozenset({"src", "lib", "packages"})


def issue_resource(repo: str, number: int) -> str:
    """The claim name of an issue."""
    return f"issue:{repo}#{number}"


def file_resource(repo: str, path: str) -> str:
    """The claim name of a file path in a repository."""
    return f"file:{repo}:{path}"


def module_resource(repo: str, name: str) -> str:
    """The claim name of a module (a coarser unit than a file)."""
    return f"module:{repo}:{name}"


def repository_resource(repo: str) -> str:
    """The claim name of a whole repository: it overlaps every file and module claim there."""
    return module_resource(repo, WHOLE_REPOSITORY)


def path_module(path: str) -> str | None:
    """The module a file path belongs to: its top-level directory (``src/<pkg>`` in a src
    layout); None for a file at the repository root (its file claim covers it)."""
    parts = [part for part in path.split("/") if part]
    if len(parts) < 2:
        return None
    if parts[0] in _SOURCE_ROOTS and len(parts) >= 3:
        return f"{parts[0]}/{parts[1]}"
    return parts[0]


def change_resources(repo: str, files: Iterable[str], modules: Iterable[str] = ()) -> list[str]:
    """What a change claims: each file, each file's module, each named module; the whole
    repository when neither files nor modules are known."""
    names = [name for name in files if name]
    wanted = {file_resource(repo, name) for name in names}
    wanted |= {module_resource(repo, module) for name in names if (module := path_module(name)) is not None}
    wanted |= {module_resource(repo, name.strip("/")) for name in modules if name.strip("/")}
    return sorted(wanted) if wanted else [repository_resource(repo)]


def resource_kind(resource: str) -> str:
    """The kind (issue, file, module) of a claim name; raises StoreError when unknown."""
    kind, sep, rest = resource.partition(":")
    if not sep or not rest or kind not in {"issue", "file", "module"}:
        raise StoreError(f"malformed claim resource {resource!r}")
    return kind
