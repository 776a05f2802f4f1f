#!/usr/bin/env bash
# Install the pinned coding-agent CLIs (Claude Code, Codex, OpenCode) into a cache
# folder outside the checkout and print that folder; export it as AGENTZ_CLI_DIR.
#
#   export AGENTZ_CLI_DIR="$(bash scripts/install-agent-clis.sh)"
#
# The binaries end up in "$AGENTZ_CLI_DIR/node_modules/.bin/". A complete folder is
# reused (marker file), so repeated CI runs on the same machine skip the ~1 GB
# download. When npm or the registry is unavailable the script warns on stderr and
# exits 0 without printing a path, so the real-CLI tests skip with a visible reason.
# With --check it only prints the folder if it is complete (exit 1 otherwise).
set -uo pipefail

CLAUDE_VERSION="${AGENTZ_CLAUDE_VERSION:-2.1.197}"
CODEX_VERSION="${AGENTZ_CODEX_VERSION:-0.169.0}"
OPENCODE_VERSION="${AGENTZ_OPENCODE_VERSION:-1.18.33}"

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/agentz"
target="$cache_root/clis-claude${CLAUDE_VERSION}-codex${CODEX_VERSION}-opencode${OPENCODE_VERSION}"
marker="$target/.complete"

warn() { echo "install-agent-clis: $*" >&2; }

if [[ -f "$marker" ]]; then
    echo "$target"
    exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
    exit 1
fi

if ! command -v npm >/dev/null 2>&1; then
    warn "npm not found; agent CLIs not installed (real-CLI tests will skip)"
    exit 0
fi

mkdir -p "$target" || { warn "cannot create $target"; exit 0; }
[[ -f "$target/package.json" ]] || echo '{"name": "agentz-clis", "private": true}' > "$target/package.json"

packages=(
    "@anthropic-ai/claude-code@${CLAUDE_VERSION}"
    "@openai/codex@${CODEX_VERSION}"
    "opencode-ai@${OPENCODE_VERSION}"
)
if ! npm install --prefix "$target" --no-audit --no-fund --loglevel=error "${packages[@]}" >&2; then
    warn "npm install failed; agent CLIs not installed (real-CLI tests will skip)"
    exit 0
fi

for bin in claude codex opencode; do
    if [[ ! -x "$target/node_modules/.bin/$bin" ]]; then
        warn "$bin missing after install; agent CLIs incomplete"
        exit 0
    fi
done

printf '%s %s %s\n' "$CLAUDE_VERSION" "$CODEX_VERSION" "$OPENCODE_VERSION" > "$marker"
echo "$target"
