"""author association of issues and comments

GitHub's ``author_association`` (OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, …) is kept
with each issue and comment so that agents are told who wrote the text they read.
Existing rows stay NULL ("unknown") until the next webhook or resync rewrites them.

Revision ID: 0005_untrusted_text
Revises: 0004_permissions
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_untrusted_text'
down_revision = '0004_permissions'
branch_labels = None
depends_on = None

TABLES = ('issues', 'comments')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('author_association', sa.String(length=32), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('author_association')
