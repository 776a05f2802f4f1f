"""What the coordinator last rendered to GitHub for each run object (``rendered_digests``).

Comparing a new rendering's digest with the stored one skips writes that would change nothing.
"""

from __future__ import annotations

from agentz_app.store.db import Database
from agentz_app.store.models import RenderedDigest, now


def rendered_digest(db: Database, run_id: str, key: str) -> str | None:
    """The digest last rendered for ``key`` of run ``run_id``, or None."""
    with db.read() as session:
        row = session.get(RenderedDigest, (run_id, key))
        return row.digest if row is not None else None


def remember_digest(db: Database, run_id: str, key: str, digest: str) -> None:
    """Record ``digest`` as rendered for ``key`` of run ``run_id``."""
    with db.begin() as session:
        row = session.get(RenderedDigest, (run_id, key), with_for_update=True)
        if row is None:
            session.add(RenderedDigest(run_id=run_id, key=key, digest=digest, updated_at=now()))
        else:
            row.digest, row.updated_at = digest, now()
