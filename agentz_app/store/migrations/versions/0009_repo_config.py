"""per-repository configuration read from .github/agent-z.yml

One row per repository: the validated configuration (NULL when the file is absent or
invalid), the problems found, the file's git object id (its ETag), the default-branch
commit it was read from and the commit whose failing ``Agent-Z / config`` check was posted.

Revision ID: 0009_repo_config
Revises: 0008_ci_verdicts
"""
from alembic import op
import sqlalchemy as sa


revision = '0009_repo_config'
down_revision = '0008_ci_verdicts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'repo_configs',
        sa.Column('repo', sa.String(length=200), nullable=False),
        sa.Column('commit_sha', sa.String(length=64), nullable=False),
        sa.Column('blob_sha', sa.String(length=64), nullable=True),
        sa.Column('config', sa.JSON(), nullable=True),
        sa.Column('problems', sa.JSON(), nullable=False),
        sa.Column('reported_sha', sa.String(length=64), nullable=True),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('repo'),
    )


def downgrade() -> None:
    op.drop_table('repo_configs')
