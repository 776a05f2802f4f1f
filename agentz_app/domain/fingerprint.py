"""The issue content fingerprint: the Scheduler Agent is asked about an issue again only when it changes.

It covers what an assessment depends on — the title, the body, the labels, how many
comments there are and which issues it depends on — and nothing that merely moves
along (``updated_at``, verdicts, runs, pull requests), which the gates handle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from agentz_app.domain.dependencies import IssueRef
from agentz_app.domain.gates import IssueView


def issue_fingerprint(issue: IssueView, dependencies: Iterable[IssueRef]) -> str:
    """sha256 over the issue's title, body, labels, comment count and dependencies (pure)."""
    document = {
        "title": issue.title,
        "body": issue.body,
        "labels": sorted({label.lower() for label in issue.labels}),
        "comments": len(issue.comments),
        "dependencies": sorted(str(ref) for ref in set(dependencies)),
    }
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()
