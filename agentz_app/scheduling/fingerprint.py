"""The candidate fingerprint: the Scheduler Agent is asked again only when it changes.

It covers what a ranking depends on — the candidates (number and ``updated_at``),
the open pull requests and which issues they reference, and which issues hold a
live run — and nothing that merely moves along (run stages, verdicts, PR pushes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from agentz_app.scheduling.deps import IssueRef
from agentz_app.scheduling.gates import IssueView, PullView


def candidate_fingerprint(
    candidates: Iterable[IssueView],
    open_pulls: Iterable[PullView],
    live_issues: Iterable[IssueRef],
) -> str:
    """sha256 over sorted candidates, open-PR state and queue state."""
    document = {
        "candidates": sorted([issue.repo, issue.number, issue.updated_at] for issue in candidates),
        "pulls": sorted(
            [pull.repo, pull.number, pull.state, sorted(pull.linked_issues)]
            for pull in open_pulls
            if pull.state == "open"
        ),
        "live": sorted([ref.repo, ref.number] for ref in live_issues),
    }
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()
