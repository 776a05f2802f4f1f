"""The reporter's claim on a run: one process at a time brings a run's GitHub view up to date."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, update

from agentz_app.store.db import Database
from agentz_app.store.models import Run, now
from agentz_app.store.queue_core import Clock


class ReportClaims:
    """Take and give back the reporter claim; record what GitHub now shows."""

    def __init__(self, db: Database, *, clock: Clock = now) -> None:
        self.db = db
        self.clock = clock

    def claim_report(self, run_id: str, *, seconds: float) -> Run | None:
        """Take the run's reporter claim for ``seconds``; the run as it is now, or None when someone holds it."""
        moment = self.clock()
        with self.db.begin() as session:
            taken = session.execute(
                update(Run)
                .where(Run.id == run_id,
                       or_(Run.report_claimed_until.is_(None), Run.report_claimed_until < moment))
                .values(report_claimed_until=moment + seconds)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if not taken:
                return None
            return session.get(Run, run_id, populate_existing=True)

    def finish_report(self, run_id: str, *, shown: float | None, retry_after: float = 0.0) -> None:
        """Give the reporter claim back; ``shown`` is the ``updated_at`` GitHub now shows (None: nothing new).

        Neither ``updated_at`` nor any status changes: reporting is not a change of the run.
        With ``retry_after`` the run is left alone that long (GitHub refused; try again later).
        """
        values: dict[str, Any] = {"report_claimed_until": self.clock() + retry_after if retry_after else None}
        if shown is not None:
            values["github_synced_at"] = shown
        with self.db.begin() as session:
            session.execute(update(Run).where(Run.id == run_id).values(**values)
                            .execution_options(synchronize_session=False))
