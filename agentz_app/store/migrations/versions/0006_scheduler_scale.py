"""stored scheduler assessments and dependency look-ups

The Scheduler Agent's assessment of each issue is kept with the issue's content
fingerprint (``issue_assessments``), so a pass asks only about new or changed issues.
Referenced issues that no snapshot holds are looked up on GitHub and remembered
(``dependency_lookups``), readable or not, instead of blocking as "state unknown".

Revision ID: 0006_scheduler_scale
Revises: 0005_untrusted_text
"""
from alembic import op
import sqlalchemy as sa


revision = '0006_scheduler_scale'
down_revision = '0005_untrusted_text'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('issue_assessments',
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('number', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('assessed_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('repo', 'number')
    )
    op.create_table('dependency_lookups',
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('number', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('state', sa.String(length=16), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('needed_by', sa.JSON(), nullable=False),
    sa.Column('checked_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('repo', 'number')
    )


def downgrade() -> None:
    op.drop_table('dependency_lookups')
    op.drop_table('issue_assessments')
