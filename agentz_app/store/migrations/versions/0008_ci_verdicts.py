"""CI results keyed by check-run id and status context; repositories that have CI

Check runs were keyed by name, so two jobs with one name (two workflows, or a push- and
a pull_request-triggered run) overwrote each other. Rows are now keyed by source and
id (check runs, suites) or context (statuses). Existing rows are copied with their name
as key. ``repository_ci`` remembers repositories that reported CI, so the no-CI grace
period no longer applies to them; it is filled from the rows already stored.

Revision ID: 0008_ci_verdicts
Revises: 0007_visible_states
"""
from alembic import op
import sqlalchemy as sa


revision = '0008_ci_verdicts'
down_revision = '0007_visible_states'
branch_labels = None
depends_on = None

OWN_CHECK_PREFIX = 'Agent-Z / '


def upgrade() -> None:
    op.create_table('repository_ci',
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('first_source', sa.String(length=255), nullable=False),
    sa.Column('first_seen_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('repo')
    )
    op.execute(
        "INSERT INTO repository_ci (repo, first_source, first_seen_at) "
        "SELECT repo, MIN(source || ':' || name), 0 FROM check_results "
        f"WHERE source IN ('check_run', 'status') AND name NOT LIKE '{OWN_CHECK_PREFIX}%' GROUP BY repo"
    )
    # Copied aside without constraints: renaming would keep index and sequence names (PostgreSQL).
    op.execute("CREATE TABLE check_results_0005 AS SELECT * FROM check_results")
    op.drop_table('check_results')
    op.create_table('check_results',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('head_sha', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('suite_id', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('conclusion', sa.String(length=32), nullable=True),
    sa.Column('app_slug', sa.String(length=200), nullable=True),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.String(length=40), nullable=False),
    sa.Column('first_seen_at', sa.Float(), nullable=False),
    sa.Column('changed_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('repo', 'head_sha', 'source', 'key')
    )
    op.execute(
        "INSERT INTO check_results (repo, head_sha, source, key, name, suite_id, status, conclusion, app_slug, "
        "summary, runs, updated_at, first_seen_at, changed_at) "
        "SELECT repo, head_sha, source, name, name, NULL, status, conclusion, app_slug, summary, 0, updated_at, 0, 0 "
        "FROM check_results_0005"
    )
    op.drop_table('check_results_0005')


def downgrade() -> None:
    op.execute("CREATE TABLE check_results_0006 AS SELECT * FROM check_results")
    op.drop_table('check_results')
    op.create_table('check_results',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('head_sha', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('conclusion', sa.String(length=32), nullable=True),
    sa.Column('app_slug', sa.String(length=200), nullable=True),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('repo', 'head_sha', 'name')
    )
    op.execute(
        "INSERT INTO check_results (repo, head_sha, name, source, status, conclusion, app_slug, summary, updated_at) "
        "SELECT repo, head_sha, MIN(name), MIN(source), MIN(status), MIN(conclusion), MIN(app_slug), MIN(summary), "
        "MIN(updated_at) FROM check_results_0006 GROUP BY repo, head_sha, name"
    )
    op.drop_table('check_results_0006')
    op.drop_table('repository_ci')
