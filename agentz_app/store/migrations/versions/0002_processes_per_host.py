"""processes keyed by host and name

Several hosts share one database; each runs its own supervisor with the same child
names. The rows only describe live processes (every supervisor rewrites its own at
start and on every change), so the table is recreated rather than copied.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _create(primary_key: tuple[str, ...]) -> None:
    op.create_table('processes',
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('restarts', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('heartbeat_at', sa.Float(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint(*primary_key)
    )


def upgrade() -> None:
    op.drop_table('processes')
    _create(('host', 'name'))


def downgrade() -> None:
    op.drop_table('processes')
    _create(('name',))
