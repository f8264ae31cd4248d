#!/usr/bin/env bash
# Re-resolve requirements/base.in into requirements/lock.txt (see README, "Pins").
# mace-torch and matbench go in with --no-deps: their declared pins conflict with the stack on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python3.11 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -r requirements/base.in
"$tmp/venv/bin/pip" install --no-deps mace-torch==0.3.16 matbench==0.6
"$tmp/venv/bin/pip" check || true   # expected: mace-torch's e3nn pin and matbench's old pins
"$tmp/venv/bin/pip" freeze --exclude-editable | sed 's/+cpu$//' > requirements/lock.txt
rm -rf "$tmp"
echo "wrote requirements/lock.txt ($(wc -l < requirements/lock.txt) packages)"
