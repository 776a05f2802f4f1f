#!/usr/bin/env bash
# Install Agent-Z with plain `pip install .` (no dev extras, as the Docker image does) into a
# throw-away venv and run `agentz demo` from another folder: the demo must go green without our
# test dependencies, and `agentz setup` must find the App manifest shipped in the package.
set -euo pipefail
cd "$(dirname "$0")/.."
source_dir=$PWD
scratch=$(mktemp -d "${TMPDIR:-/tmp}/agentz-plain-XXXXXX")
trap 'rm -rf "$scratch"' EXIT

python3 -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install -q "$source_dir"
if "$scratch/venv/bin/python" -c "import pytest" 2>/dev/null; then
    echo "check-plain-install: pytest is installed without the dev extras; the check would prove nothing" >&2
    exit 1
fi
mkdir "$scratch/elsewhere"
cd "$scratch/elsewhere"
"$scratch/venv/bin/python" -c "from agentz_app.setup import load_manifest, packaged_manifest; \
load_manifest(); print('packaged App manifest:', packaged_manifest())"
env -u AGENTZ_CLI_DIR "$scratch/venv/bin/agentz" demo --timeout 150
