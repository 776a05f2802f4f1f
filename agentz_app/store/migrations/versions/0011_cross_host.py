"""the host holding each agent session

A CLI session lives in the agent home of the host that ran it (under that host's
``STATE_DIR``). ``session_host`` and ``reviewer_session_host`` record that host's
``HOST_ID`` next to ``session_id`` and ``reviewer_session_id``, so a run resumed on
another host starts a fresh session instead of naming one its CLI cannot know.
Existing sessions stay NULL (host unknown) and are not resumed.

Revision ID: 0011_cross_host
Revises: 0010_parity_a
"""
from alembic import op
import sqlalchemy as sa


revision = '0011_cross_host'
down_revision = '0010_parity_a'
branch_labels = None
depends_on = None

COLUMNS = ('session_host', 'reviewer_session_host')


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        for column in COLUMNS:
            batch_op.add_column(sa.Column(column, sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        for column in COLUMNS:
            batch_op.drop_column(column)
