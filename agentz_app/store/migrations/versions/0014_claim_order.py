"""an index in claim order over the runs nobody holds

A claim takes the oldest unleased run in a status: ``WHERE status = … AND lease_owner IS
NULL ORDER BY created_at, id LIMIT n FOR UPDATE SKIP LOCKED``. Without an index in that
order every claim sorted all queued runs. The partial index holds only unleased runs, so
it stays as small as the backlog.

Revision ID: 0014_claim_order
Revises: 0013_run_wakeups
"""
from alembic import op
import sqlalchemy as sa


revision = '0014_claim_order'
down_revision = '0013_run_wakeups'
branch_labels = None
depends_on = None

UNLEASED = sa.text('lease_owner IS NULL')


def upgrade() -> None:
    op.create_index('ix_runs_claim_order', 'runs', ['status', 'created_at', 'id'], unique=False,
                    postgresql_where=UNLEASED, sqlite_where=UNLEASED)


def downgrade() -> None:
    op.drop_index('ix_runs_claim_order', table_name='runs')
