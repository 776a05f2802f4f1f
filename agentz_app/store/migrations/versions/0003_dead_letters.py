"""dead deliveries

A delivery whose handler keeps failing is marked dead (``dead_at``) instead of being
retried forever. The pending index gains the column so claiming skips dead rows.

Revision ID: 0003_dead_letters
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_dead_letters'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('dead_at', sa.Float(), nullable=True))
        batch.drop_index('ix_deliveries_pending')
        batch.create_index('ix_deliveries_pending', ['processed_at', 'dead_at', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_index('ix_deliveries_pending')
        batch.create_index('ix_deliveries_pending', ['processed_at', 'next_attempt_at'], unique=False)
        batch.drop_column('dead_at')
