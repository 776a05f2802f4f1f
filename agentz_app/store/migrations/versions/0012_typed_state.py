"""typed tables instead of the kv grab-bag

Each kind of small shared state the ``kv`` table held under a key prefix gets its own
table with typed columns: scheduler dirty marks (``scheduler:dirty:``), ranking passes
(``scheduler:pass:``), resync cursors (``resync:``), retention prune markers
(``retention:``), supervisor restart requests (``supervisor:restart:``) and the
coordinator's rendered digests (``agentz:render:``). Existing rows are copied across
and ``kv`` is dropped; the downgrade writes them back. The GitHub request counters
(``metrics:github``) now live in Prometheus' per-process files and are not copied.

Revision ID: 0012_typed_state
Revises: 0011_cross_host
"""
from __future__ import annotations

from typing import Any

from alembic import op
import sqlalchemy as sa


revision = '0012_typed_state'
down_revision = '0011_cross_host'
branch_labels = None
depends_on = None

DIRTY = 'scheduler:dirty:'
PASS = 'scheduler:pass:'
RESYNC = 'resync:'
RETENTION = 'retention:'
RESTART = 'supervisor:restart:'
RENDER = 'agentz:render:'
PASS_COUNTS = ('calls', 'prompt_chars', 'candidates', 'assessed', 'admitted')

kv = sa.table('kv', sa.column('key', sa.String), sa.column('value', sa.JSON), sa.column('updated_at', sa.Float))
dirty_marks = sa.table('scheduler_dirty_marks', sa.column('repo', sa.String), sa.column('since', sa.Float),
                       sa.column('last', sa.Float), sa.column('reason', sa.Text))
passes = sa.table('scheduler_passes', sa.column('repo', sa.String), sa.column('at', sa.Float),
                  *(sa.column(name, sa.Integer) for name in PASS_COUNTS))
cursors = sa.table('resync_cursors', sa.column('repo', sa.String), sa.column('ok_at', sa.Float),
                   sa.column('failed_at', sa.Float), sa.column('error', sa.Text))
markers = sa.table('prune_markers', sa.column('key', sa.String), sa.column('started_at', sa.Float),
                   sa.column('finished_at', sa.Float), sa.column('removed', sa.JSON))
restarts = sa.table('restart_requests', sa.column('host', sa.String), sa.column('name', sa.String),
                    sa.column('requested_at', sa.Float), sa.column('actor', sa.String))
digests = sa.table('rendered_digests', sa.column('run_id', sa.String), sa.column('key', sa.String),
                   sa.column('digest', sa.Text), sa.column('updated_at', sa.Float))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _create_tables() -> None:
    op.create_table('scheduler_dirty_marks',
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('since', sa.Float(), nullable=False),
    sa.Column('last', sa.Float(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('repo')
    )
    op.create_table('scheduler_passes',
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    *(sa.Column(name, sa.Integer(), nullable=False) for name in PASS_COUNTS),
    sa.PrimaryKeyConstraint('repo')
    )
    op.create_table('resync_cursors',
    sa.Column('repo', sa.String(length=200), nullable=False),
    sa.Column('ok_at', sa.Float(), nullable=True),
    sa.Column('failed_at', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('repo')
    )
    op.create_table('prune_markers',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.Column('removed', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('restart_requests',
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('requested_at', sa.Float(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('host', 'name')
    )
    op.create_table('rendered_digests',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('digest', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('run_id', 'key')
    )


def _typed_rows(key: str, value: dict[str, Any], updated_at: float) -> tuple[sa.TableClause, dict[str, Any]] | None:
    """The typed table and row for one ``kv`` row, or None for a kind no longer stored."""
    if key.startswith(DIRTY):
        last = _number(value.get('last')) or updated_at
        return dirty_marks, {'repo': key[len(DIRTY):], 'since': _number(value.get('since')) or last,
                             'last': last, 'reason': str(value.get('reason') or '')}
    if key.startswith(PASS):
        counts = {name: int(_number(value.get(name)) or 0) for name in PASS_COUNTS}
        return passes, {'repo': key[len(PASS):], 'at': _number(value.get('at')) or updated_at, **counts}
    if key.startswith(RESYNC):
        return cursors, {'repo': key[len(RESYNC):], 'ok_at': _number(value.get('ok_at')),
                         'failed_at': _number(value.get('failed_at')), 'error': str(value.get('error') or '')}
    if key.startswith(RETENTION):
        removed = value.get('removed')
        return markers, {'key': key, 'started_at': _number(value.get('started_at')),
                         'finished_at': _number(value.get('finished_at')),
                         'removed': removed if isinstance(removed, dict) else None}
    if key.startswith(RESTART):
        host, _, name = key[len(RESTART):].rpartition('/')
        return restarts, {'host': host, 'name': name, 'actor': str(value.get('actor') or 'operator'),
                          'requested_at': _number(value.get('requested_at')) or updated_at}
    if key.startswith(RENDER):
        run_id, _, object_key = key[len(RENDER):].partition(':')
        return digests, {'run_id': run_id, 'key': object_key, 'digest': str(value.get('sha256') or ''),
                         'updated_at': updated_at}
    return None


def upgrade() -> None:
    _create_tables()
    connection = op.get_bind()
    for key, value, updated_at in connection.execute(sa.select(kv.c.key, kv.c.value, kv.c.updated_at)):
        typed = _typed_rows(key, value if isinstance(value, dict) else {}, float(updated_at or 0.0))
        if typed is not None:
            table, row = typed
            connection.execute(table.insert().values(**row))
    op.drop_table('kv')


def _kv_rows(connection: sa.Connection) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for mark in connection.execute(sa.select(dirty_marks)).mappings():
        rows.append({'key': DIRTY + mark['repo'], 'updated_at': mark['last'],
                     'value': {'since': mark['since'], 'last': mark['last'], 'reason': mark['reason']}})
    for ranking in connection.execute(sa.select(passes)).mappings():
        rows.append({'key': PASS + ranking['repo'], 'updated_at': ranking['at'],
                     'value': {'at': ranking['at'], **{name: ranking[name] for name in PASS_COUNTS}}})
    for cursor in connection.execute(sa.select(cursors)).mappings():
        value = {name: cursor[name] for name in ('ok_at', 'failed_at') if cursor[name] is not None}
        rows.append({'key': RESYNC + cursor['repo'], 'value': {**value, 'error': cursor['error']},
                     'updated_at': max(value.values(), default=0.0)})
    for marker in connection.execute(sa.select(markers)).mappings():
        value = {name: marker[name] for name in ('started_at', 'finished_at', 'removed') if marker[name] is not None}
        rows.append({'key': marker['key'], 'value': value,
                     'updated_at': marker['finished_at'] or marker['started_at'] or 0.0})
    for request in connection.execute(sa.select(restarts)).mappings():
        rows.append({'key': f"{RESTART}{request['host']}/{request['name']}", 'updated_at': request['requested_at'],
                     'value': {'requested_at': request['requested_at'], 'actor': request['actor']}})
    for digest in connection.execute(sa.select(digests)).mappings():
        rows.append({'key': f"{RENDER}{digest['run_id']}:{digest['key']}", 'updated_at': digest['updated_at'],
                     'value': {'sha256': digest['digest']}})
    return rows


def downgrade() -> None:
    op.create_table('kv',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    connection = op.get_bind()
    rows = _kv_rows(connection)
    if rows:
        connection.execute(kv.insert(), rows)
    for table in ('rendered_digests', 'restart_requests', 'prune_markers', 'resync_cursors', 'scheduler_passes',
                  'scheduler_dirty_marks'):
        op.drop_table(table)
