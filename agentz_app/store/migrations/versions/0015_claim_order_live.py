"""the claim-order index holds only live runs

``ix_runs_claim_order`` held every unleased run, finished ones included: every run that
ended added an entry, and the index grew with the history instead of the backlog. It now
holds the live runs nobody holds, so a finished run leaves it, and a completion writes one
index entry less. Claim statements repeat the status term of its predicate.

Revision ID: 0015_claim_order_live
Revises: 0014_claim_order
"""
from alembic import op
import sqlalchemy as sa


revision = '0015_claim_order_live'
down_revision = '0014_claim_order'
branch_labels = None
depends_on = None

# The live statuses when this revision was written (the models derive them from the state machine).
LIVE_UNLEASED = sa.text(
    "lease_owner IS NULL AND status IN ('awaiting_approval', 'deferred', 'developing', 'fixing', "
    "'fixing_ci', 'planning', 'queued', 'ready', 'reviewing', 'submitting', 'waiting_checks')"
)
UNLEASED = sa.text('lease_owner IS NULL')


def upgrade() -> None:
    op.drop_index('ix_runs_claim_order', table_name='runs')
    op.create_index('ix_runs_claim_order', 'runs', ['status', 'created_at', 'id'], unique=False,
                    postgresql_where=LIVE_UNLEASED, sqlite_where=LIVE_UNLEASED)


def downgrade() -> None:
    op.drop_index('ix_runs_claim_order', table_name='runs')
    op.create_index('ix_runs_claim_order', 'runs', ['status', 'created_at', 'id'], unique=False,
                    postgresql_where=UNLEASED, sqlite_where=UNLEASED)
