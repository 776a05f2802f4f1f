#!/usr/bin/env bash
# Regenerate the initial migration from agentz_app/store/models.py (pre-release schema only).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-/work/venv/bin/python}
[ -x "$python" ] || python=python
tmp=$(mktemp -d)
rm -f agentz_app/store/migrations/versions/0001_initial_schema.py
"$python" - "$tmp" <<'PY'
import sys
from alembic import command
from agentz_app.store.migrate import alembic_config
command.revision(alembic_config(f"sqlite:///{sys.argv[1]}/gen.db"), message="initial schema",
                 autogenerate=True, rev_id="0001")
PY
rm -rf "$tmp"
