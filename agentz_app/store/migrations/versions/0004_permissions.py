"""the permission rule's durable facts

Who may steer a run is decided once per path and remembered: GitHub's permission
answers (``actor_permissions``), slash commands already handled per comment and
command (``command_executions``), throttled refusal replies (``refusal_replies``),
who added scheduling labels (``label_actors``), and notes such as ignored feedback
that a run's status comment shows (``runs.notes``).

Revision ID: 0004_permissions
Revises: 0003_dead_letters
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_permissions'
down_revision = '0003_dead_letters'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('actor_permissions',
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('login', sa.String(length=200), nullable=False),
    sa.Column('permission', sa.String(length=32), nullable=True),
    sa.Column('role_name', sa.String(length=100), nullable=True),
    sa.Column('checked_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('repo', 'login')
    )
    op.create_table('command_executions',
    sa.Column('comment_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('command_hash', sa.String(length=64), nullable=False),
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('issue_number', sa.Integer(), nullable=False),
    sa.Column('login', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('comment_id', 'command_hash')
    )
    op.create_table('refusal_replies',
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('issue_number', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('login', sa.String(length=200), nullable=False),
    sa.Column('replied_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('repo', 'issue_number', 'login')
    )
    op.create_table('label_actors',
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('issue_number', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('label', sa.String(length=255), nullable=False),
    sa.Column('added_by', sa.String(length=200), nullable=False),
    sa.Column('trusted', sa.Boolean(), nullable=False),
    sa.Column('added_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('repo', 'issue_number', 'label')
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notes', sa.JSON(), server_default='[]', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('notes')
    op.drop_table('label_actors')
    op.drop_table('refusal_replies')
    op.drop_table('command_executions')
    op.drop_table('actor_permissions')
