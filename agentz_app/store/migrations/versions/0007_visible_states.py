"""GitHub view of each run: stale marker, reporter claim, trigger to acknowledge

``runs.github_synced_at`` holds the ``updated_at`` of the run state GitHub last showed
(labels, status comment, check runs); a run whose ``updated_at`` is newer is reported
again. Existing runs count as shown, so an upgrade does not re-edit every old comment.
``report_claimed_until`` lets one reporter at a time work on a run; ``trigger_ref``
names what to acknowledge with a reaction (``issue`` or ``comment:<id>``).

Revision ID: 0007_visible_states
Revises: 0006_scheduler_scale
"""
from alembic import op
import sqlalchemy as sa


revision = '0007_visible_states'
down_revision = '0006_scheduler_scale'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trigger_ref', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('github_synced_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('report_claimed_until', sa.Float(), nullable=True))
    op.execute('UPDATE runs SET github_synced_at = updated_at')


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('report_claimed_until')
        batch_op.drop_column('github_synced_at')
        batch_op.drop_column('trigger_ref')
