#!/usr/bin/env bash
# Run the whole test suite. Creates .venv/ on first use. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source tools/ensure_venv.sh requirements-test.txt
.venv/bin/python -m ruff check --quiet modules tests bench tools scripts extensions webui.py
exec .venv/bin/python -m pytest "$@"
