#!/usr/bin/env bash
# Create .venv/ in the repository root on first use and install the given requirements file.
# Re-installs only when the requirements files change (a stamp holds their hash), so a
# launch after the first one starts at once. Usage: source tools/ensure_venv.sh REQUIREMENTS_FILE
set -euo pipefail
_req_file="$1"
_python="${PYTHON:-python3.11}"
command -v "$_python" >/dev/null 2>&1 || _python=python3
if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv with $_python ..." >&2
    "$_python" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip >&2
fi
_stamp=".venv/.installed-$(basename "$_req_file").sha256"
_hash=$(cat requirements*.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp")" != "$_hash" ]; then
    echo "Installing $_req_file into .venv (first run takes a few minutes) ..." >&2
    # torch and torchvision are pinned in the same file, so pip installs them in one call.
    .venv/bin/python -m pip install --quiet -r "$_req_file" >&2
    # Registers the `aigen` console script; the code itself runs from the checkout.
    .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e . >&2
    echo "$_hash" > "$_stamp"
fi
