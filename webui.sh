#!/usr/bin/env bash
# Launch AIGen Studio. Creates .venv/ on first use, then runs webui.py with the given arguments,
# e.g. ./webui.sh generate --prompt "a red circle"
set -euo pipefail
cd "$(dirname "$0")"
source tools/ensure_venv.sh requirements.txt
exec .venv/bin/python webui.py "$@"
