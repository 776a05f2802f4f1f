#!/usr/bin/env python3
"""Vendor the part of GitHub's published API description that Agent-Z uses.

Downloads pinned releases of ``@octokit/openapi`` (REST) and ``@octokit/openapi-webhooks``
(webhook payloads) with ``npm pack``, checks their integrity, keeps only the operations
and webhook events listed below, resolves every ``$ref`` into one self-contained JSON
Schema document (OpenAPI 3.0's ``nullable`` turned into ``"null"`` types, prose and
examples dropped) and writes it to ``tests/contract/github-spec.json`` with the packages'
MIT licence next to it. The test suite validates fakehub's traffic against that file
without network.

Usage: ``python scripts/update-github-spec.py [--out DIR]``. To follow a new release,
change the versions and integrities in ``PACKAGES`` and run it again.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGES = {
    "rest": ("@octokit/openapi", "23.0.2",
             "sha512-pV8M7L9GY23AybNvTmo2nyjmpmnt6+2sRE/tqr0ZLQcPS4lnw7u5eZGNmwRNkBC3D7gZXbFx5AHzLUVRBXGDhg=="),
    "hook": ("@octokit/openapi-webhooks", "12.1.0",
             "sha512-Z5eDsLCUNbx1zHpZb1LNQirADqdMTvWJQ/deahi0ws+tWWnwHXB+Pr4jfmM9OrETS9Y5iW8ZRu1fdbudObhLrg=="),
}
DESCRIPTION = "package/generated/api.github.com.json"

# Every REST operation Agent-Z calls (agentz_app/, workers/) or fakehub serves, as "METHOD /template".
OPERATIONS = [
    # App and installations
    "GET /app",
    "GET /app/installations",
    "POST /app/installations/{installation_id}/access_tokens",
    "GET /repos/{owner}/{repo}/installation",
    "GET /installation/repositories",
    "GET /app/hook/deliveries",
    "GET /app/hook/deliveries/{delivery_id}",
    "POST /app/hook/deliveries/{delivery_id}/attempts",
    "POST /app-manifests/{code}/conversions",
    "GET /rate_limit",
    # repositories, issues, comments, labels, reactions
    "GET /repos/{owner}/{repo}",
    "GET /repos/{owner}/{repo}/issues",
    "POST /repos/{owner}/{repo}/issues",
    "GET /repos/{owner}/{repo}/issues/{issue_number}",
    "PATCH /repos/{owner}/{repo}/issues/{issue_number}",
    "GET /repos/{owner}/{repo}/issues/{issue_number}/comments",
    "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
    "GET /repos/{owner}/{repo}/issues/comments/{comment_id}",
    "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}",
    "DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}",
    "GET /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
    "POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
    "GET /repos/{owner}/{repo}/issues/{issue_number}/reactions",
    "POST /repos/{owner}/{repo}/issues/{issue_number}/reactions",
    "POST /repos/{owner}/{repo}/issues/{issue_number}/labels",
    "PUT /repos/{owner}/{repo}/issues/{issue_number}/labels",
    "DELETE /repos/{owner}/{repo}/issues/{issue_number}/labels",
    "DELETE /repos/{owner}/{repo}/issues/{issue_number}/labels/{name}",
    "POST /repos/{owner}/{repo}/issues/{issue_number}/assignees",
    "DELETE /repos/{owner}/{repo}/issues/{issue_number}/assignees",
    "GET /repos/{owner}/{repo}/collaborators/{username}/permission",
    # pull requests and reviews
    "GET /repos/{owner}/{repo}/pulls",
    "POST /repos/{owner}/{repo}/pulls",
    "GET /repos/{owner}/{repo}/pulls/{pull_number}",
    "PATCH /repos/{owner}/{repo}/pulls/{pull_number}",
    "PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge",
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/files",
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews",
    "POST /repos/{owner}/{repo}/pulls/{pull_number}/reviews",
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments",
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/comments",
    "POST /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
    # checks, statuses, Actions
    "POST /repos/{owner}/{repo}/check-runs",
    "GET /repos/{owner}/{repo}/check-runs/{check_run_id}",
    "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}",
    "GET /repos/{owner}/{repo}/check-runs/{check_run_id}/annotations",
    "POST /repos/{owner}/{repo}/check-runs/{check_run_id}/rerequest",
    "GET /repos/{owner}/{repo}/check-suites/{check_suite_id}",
    "GET /repos/{owner}/{repo}/check-suites/{check_suite_id}/check-runs",
    "POST /repos/{owner}/{repo}/check-suites/{check_suite_id}/rerequest",
    "GET /repos/{owner}/{repo}/commits/{ref}/check-runs",
    "GET /repos/{owner}/{repo}/commits/{ref}/check-suites",
    "GET /repos/{owner}/{repo}/commits/{ref}/status",
    "GET /repos/{owner}/{repo}/commits/{ref}/statuses",
    "POST /repos/{owner}/{repo}/statuses/{sha}",
    "GET /repos/{owner}/{repo}/actions/jobs/{job_id}",
    "GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs",
    "GET /repos/{owner}/{repo}/actions/runs/{run_id}",
    "GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
    "POST /repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs",
    "POST /repos/{owner}/{repo}/actions/jobs/{job_id}/rerun",
]

# Webhook events (event.action) fakehub emits or Agent-Z handles.
WEBHOOKS = [
    "check_run.completed", "check_run.created", "check_run.requested_action", "check_run.rerequested",
    "check_suite.completed", "check_suite.requested", "check_suite.rerequested",
    "installation.created", "installation.deleted", "installation.new_permissions_accepted",
    "installation.suspend", "installation.unsuspend",
    "installation_repositories.added", "installation_repositories.removed",
    "issue_comment.created", "issue_comment.deleted", "issue_comment.edited",
    "issues.assigned", "issues.closed", "issues.deleted", "issues.edited", "issues.labeled", "issues.opened",
    "issues.reopened", "issues.transferred", "issues.unassigned", "issues.unlabeled",
    "pull_request.assigned", "pull_request.closed", "pull_request.converted_to_draft", "pull_request.edited",
    "pull_request.labeled", "pull_request.opened", "pull_request.ready_for_review", "pull_request.reopened",
    "pull_request.review_requested",
    "pull_request.synchronize", "pull_request.unassigned", "pull_request.unlabeled",
    "pull_request_review.dismissed", "pull_request_review.edited", "pull_request_review.submitted",
    "pull_request_review_comment.created", "pull_request_review_comment.deleted",
    "pull_request_review_comment.edited",
    "push", "status",
    "workflow_job.completed", "workflow_job.in_progress", "workflow_job.queued", "workflow_job.waiting",
    "workflow_run.completed", "workflow_run.in_progress", "workflow_run.requested",
]

# Where the published description contradicts GitHub's own component schemas: the inline
# copy of GET /app/installations' item joins "Simple User" and "Enterprise" with allOf (an
# account would have to be both); the installation component says anyOf, as GitHub answers.
RESPONSE_OVERRIDES = {
    ("GET /app/installations", "200"): {"type": "array", "items": {"$ref": "#/components/schemas/installation"}},
}

# The permission names GitHub's webhook documentation uses, as manifest keys.
PERMISSION_KEYS = {
    "Actions": "actions", "Checks": "checks", "Commit statuses": "statuses", "Contents": "contents",
    "Issues": "issues", "Metadata": "metadata", "Pull requests": "pull_requests", "Deployments": "deployments",
}
_EVENT_PERMISSION = re.compile(r'must have at least (read|write)-level access for the "([^"]+)"')
_OPERATION_PERMISSION = re.compile(r"`(\w+):(read|write)` permission")
_KEEP_SCHEMA_KEYS = {
    "type", "properties", "required", "items", "enum", "const", "oneOf", "anyOf", "allOf", "not",
    "additionalProperties", "maxLength", "minLength", "maximum", "minimum", "maxItems", "minItems",
    "pattern", "format", "nullable", "$ref", "default", "patternProperties", "uniqueItems",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minProperties", "maxProperties",
}


def npm_pack(name: str, version: str, integrity: str, dest: Path) -> Path:
    """Download ``name@version`` with ``npm pack`` and check its pinned integrity."""
    out = subprocess.run(["npm", "pack", f"{name}@{version}", "--json", "--pack-destination", str(dest)],
                         check=True, capture_output=True, text=True).stdout
    tarball = dest / json.loads(out)[0]["filename"]
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if digest != expected:
        raise SystemExit(f"{name}@{version}: integrity mismatch ({algorithm}-{digest})")
    return tarball


def read_member(tarball: Path, member: str) -> bytes:
    """One file of an npm tarball."""
    with tarfile.open(tarball) as archive:
        handle = archive.extractfile(member)
        if handle is None:
            raise SystemExit(f"{tarball.name}: no {member}")
        return handle.read()


class Extractor:
    """Copy schemas out of one OpenAPI document, renaming ``$ref``s into a shared ``definitions`` table."""

    def __init__(self, document: dict[str, Any], prefix: str, definitions: dict[str, Any]) -> None:
        self.document = document
        self.prefix = prefix
        self.definitions = definitions

    def lookup(self, ref: str) -> Any:
        """The node a local ``$ref`` points to."""
        node: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def deref(self, node: Any) -> Any:
        """Follow ``$ref``s (parameters, responses, request bodies) to the node itself."""
        while isinstance(node, dict) and "$ref" in node:
            node = self.lookup(node["$ref"])
        return node

    def schema(self, node: Any) -> Any:
        """A JSON Schema copy of an OpenAPI schema; component schemas become definitions."""
        if isinstance(node, list):
            return [self.schema(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return self._referenced(node["$ref"])
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key not in _KEEP_SCHEMA_KEYS or key == "nullable":
                continue
            if key == "properties" or key == "patternProperties":
                out[key] = {name: self.schema(sub) for name, sub in value.items()}
            elif key in ("items", "not", "additionalProperties") or key in ("oneOf", "anyOf", "allOf"):
                out[key] = self.schema(value)
            else:
                out[key] = value
        if node.get("nullable"):
            out = nullable(out)
        return out

    def _referenced(self, ref: str) -> Any:
        """A component schema becomes a definition (converted once); any other reference is inlined."""
        if not ref.startswith("#/components/schemas/"):
            return self.schema(self.lookup(ref))
        name = f"{self.prefix}.{ref.rsplit('/', 1)[1]}"
        if name not in self.definitions:
            self.definitions[name] = {}
            self.definitions[name] = self.schema(self.lookup(ref))
        return {"$ref": f"#/definitions/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0's ``nullable: true`` as JSON Schema."""
    if isinstance(schema.get("type"), str):
        schema = {**schema, "type": [schema["type"], "null"]}
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
        return schema
    return {"anyOf": [{"type": "null"}, schema]}


def operation_entry(extractor: Extractor, path: str, method: str) -> dict[str, Any]:
    """Parameters, request body schema, response schemas and metadata of one operation."""
    item = extractor.document["paths"][path]
    op = item[method.lower()]
    params: dict[str, dict[str, Any]] = {"path": {}, "query": {}}
    for raw in [*item.get("parameters", []), *op.get("parameters", [])]:
        param = extractor.deref(raw)
        if param["in"] in params:
            params[param["in"]][param["name"]] = {"required": bool(param.get("required")),
                                                  "schema": extractor.schema(param.get("schema", {}))}
    entry: dict[str, Any] = {"operationId": op["operationId"], "parameters": params,
                             "x-github": op.get("x-github", {})}
    hint = _OPERATION_PERMISSION.findall(op.get("description", ""))
    if hint:
        entry["permissionHints"] = sorted({f"{name}:{level}" for name, level in hint})
    body = extractor.deref(op.get("requestBody"))
    if body:
        content = body.get("content", {})
        media = content.get("application/json") or next(iter(content.values()), {})
        entry["requestBody"] = {"required": bool(body.get("required")),
                                "schema": extractor.schema(media.get("schema", {}))}
    responses = {}
    for status, raw in op.get("responses", {}).items():
        override = RESPONSE_OVERRIDES.get((f"{method} {path}", status))
        if override is not None:
            responses[status] = extractor.schema(override)
            continue
        response = extractor.deref(raw)
        content = response.get("content", {})
        media = content.get("application/json")
        responses[status] = extractor.schema(media["schema"]) if media and "schema" in media else None
    entry["responses"] = responses
    return entry


def webhook_entry(extractor: Extractor, key: str) -> dict[str, Any]:
    """The payload schema and the permission GitHub documents for one webhook event."""
    post = extractor.document["webhooks"][key]["post"]
    media = post["requestBody"]["content"]["application/json"]
    permission = None
    found = _EVENT_PERMISSION.findall(post.get("summary", "") + " " + post.get("description", ""))
    if found:
        level, display = found[0]
        permission = f"{PERMISSION_KEYS.get(display, display)}:{level}"
    return {"permission": permission, "schema": extractor.schema(media["schema"])}


def share_repeats(spec: dict[str, Any], *, min_size: int = 600) -> None:
    """Replace every large subschema that occurs more than once by one shared definition (in place)."""
    definitions = spec["definitions"]
    sharer = _RepeatSharer(definitions, min_size)
    for root in definitions.values():
        sharer.count(root, "schema", True)
    for table in ("operations", "webhooks"):
        for root in spec[table].values():
            sharer.count(root, "data", True)
    for name in list(definitions):
        definitions[name] = sharer.replace(definitions[name], "schema", True)
    for table in ("operations", "webhooks"):
        spec[table] = {key: sharer.replace(value, "data", True) for key, value in spec[table].items()}
    spec["definitions"] = dict(sorted(definitions.items()))


def _canonical(node: Any) -> str:
    return json.dumps(node, sort_keys=True, separators=(",", ":"))


def _kinds(node: dict[str, Any], kind: str) -> Iterator[tuple[str, Any, str]]:
    """``(key, value, kind)`` of a node's children: ``schema``, ``responses`` (a map of schemas) or ``data``."""
    for key, value in node.items():
        if kind == "schema":
            data = key in ("properties", "patternProperties", "enum", "const", "default", "required")
            yield key, value, ("responses" if key in ("properties", "patternProperties") else
                               "data" if data else "schema")
        elif kind == "responses":
            yield key, value, "schema"
        else:
            yield key, value, ("schema" if key == "schema" else "responses" if key == "responses" else "data")


class _RepeatSharer:
    """Counts large subschemas, then replaces the repeated ones by references to shared definitions."""

    def __init__(self, definitions: dict[str, Any], min_size: int) -> None:
        self.definitions = definitions
        self.min_size = min_size
        self.counts: dict[str, int] = {}

    def count(self, node: Any, kind: str, top: bool) -> None:
        if isinstance(node, dict):
            text = _canonical(node)
            if kind == "schema" and not top and len(text) >= self.min_size:
                self.counts[text] = self.counts.get(text, 0) + 1
            for _, value, child in _kinds(node, kind):
                self.count(value, child, False)
        elif isinstance(node, list):
            for value in node:
                self.count(value, kind, False)

    def replace(self, node: Any, kind: str, top: bool) -> Any:
        if isinstance(node, dict):
            text = _canonical(node)
            if kind == "schema" and not top and self.counts.get(text, 0) > 1:
                return self._shared(node, text)
            return {key: self.replace(value, child, False) for key, value, child in _kinds(node, kind)}
        if isinstance(node, list):
            return [self.replace(value, kind, False) for value in node]
        return node

    def _shared(self, node: dict[str, Any], text: str) -> dict[str, str]:
        name = "shared." + hashlib.sha256(text.encode()).hexdigest()[:12]
        if name not in self.definitions:
            self.definitions[name] = {}
            self.definitions[name] = self.replace(node, "schema", True)
        return {"$ref": f"#/definitions/{name}"}


def build(rest: dict[str, Any], hooks: dict[str, Any]) -> dict[str, Any]:
    """The vendored document."""
    definitions: dict[str, Any] = {}
    rest_x = Extractor(rest, "rest", definitions)
    hook_x = Extractor(hooks, "hook", definitions)
    operations = {}
    for spec in OPERATIONS:
        method, path = spec.split(" ", 1)
        operations[spec] = operation_entry(rest_x, path, method)
    webhooks = {}
    for name in WEBHOOKS:
        key = name.replace("_", "-").replace(".", "-")
        webhooks[name] = webhook_entry(hook_x, key)
    spec = {
        "source": {f"{pkg}@{version}": DESCRIPTION.removeprefix("package/") for pkg, version, _ in PACKAGES.values()},
        "operations": operations,
        "webhooks": webhooks,
        "definitions": definitions,
    }
    share_repeats(spec)
    return spec


def main() -> int:
    """Download, extract and write the vendored description and licence."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "contract")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="github-spec-") as tmp:
        documents, licences = {}, []
        for kind, (name, version, integrity) in PACKAGES.items():
            tarball = npm_pack(name, version, integrity, Path(tmp))
            documents[kind] = json.loads(read_member(tarball, DESCRIPTION))
            licences.append(f"{name}@{version}\n\n{read_member(tarball, 'package/LICENSE').decode().strip()}\n")
    spec = build(documents["rest"], documents["hook"])
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "github-spec.json"
    target.write_text(json.dumps(spec, sort_keys=True, separators=(",", ":")) + "\n", "utf-8")
    (args.out / "github-spec.LICENSE").write_text(
        "github-spec.json is extracted from these packages, published under the MIT licence:\n\n"
        + "\n\n".join(licences), "utf-8")
    print(f"wrote {target} ({target.stat().st_size} bytes, {len(spec['operations'])} operations, "
          f"{len(spec['webhooks'])} webhook events, {len(spec['definitions'])} definitions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
