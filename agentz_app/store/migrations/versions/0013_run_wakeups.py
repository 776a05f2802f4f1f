"""wake-ups: facts webhooks record about runs, for workers to act on

Webhook handlers no longer act on runs themselves: they record what happened (CI
settled, pull request closed, review feedback, a re-run) as a row per run and kind
of fact, and a worker claims the row with a lease, acts and removes it.

Revision ID: 0013_run_wakeups
Revises: 0012_typed_state
"""
from alembic import op
import sqlalchemy as sa


revision = '0013_run_wakeups'
down_revision = '0012_typed_state'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'run_wakeups',
        sa.Column('run_id', sa.String(length=32), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('woken_at', sa.Float(), nullable=False),
        sa.Column('due_at', sa.Float(), nullable=False),
        sa.Column('lease_owner', sa.String(length=255), nullable=True),
        sa.Column('lease_expires_at', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('run_id', 'key'),
    )
    with op.batch_alter_table('run_wakeups', schema=None) as batch_op:
        batch_op.create_index('ix_run_wakeups_due', ['due_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('run_wakeups', schema=None) as batch_op:
        batch_op.drop_index('ix_run_wakeups_due')
    op.drop_table('run_wakeups')
