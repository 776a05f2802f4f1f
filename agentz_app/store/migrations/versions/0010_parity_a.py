"""process restart countdown and circuit-breaker count

``processes.restart_at`` is when a child in ``backoff`` is restarted (NULL otherwise);
``processes.recent_crashes`` counts its crashes within the circuit breaker's window, so
the dashboard can show a countdown and how close the breaker is to opening.

Revision ID: 0010_parity_a
Revises: 0009_repo_config
"""
from alembic import op
import sqlalchemy as sa


revision = '0010_parity_a'
down_revision = '0009_repo_config'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('processes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('restart_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('recent_crashes', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('processes', schema=None) as batch_op:
        batch_op.drop_column('recent_crashes')
        batch_op.drop_column('restart_at')
