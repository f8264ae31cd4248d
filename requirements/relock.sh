#!/usr/bin/env bash
# Re-resolve requirements/base.in into the two installed sets (see README, "Pins"):
#   requirements/lock.txt   the complete local environment, Python 3.11 (make install, Binder, conda)
#   requirements/colab.txt  what Colab (Python 3.13) lacks, resolved against Colab's own versions
#   requirements/colab-twin.txt  Colab's versions of the rest of that resolution (the Colab twin's base)
#                           (requirements/colab-constraints.txt, from ../shared/colab/pip-freeze.txt)
# mace-torch and matbench go in with --no-deps in both: their declared pins conflict with the stack on purpose.
# The lock carries the sha256 of every file pip installs from it on Linux x86_64 (make install uses
# --require-hashes): pip downloads each pinned file, the script hashes what it got. torch is the CPU build,
# which pip takes from this machine's wheel folder (pip config: find-links) or --extra-index-url
# https://download.pytorch.org/whl/cpu.
# Usage: bash requirements/relock.sh [lock|add|colab|hashes]   (default: both lock and colab;
#        add: resolve base.in keeping every pin of the current lock (a new line of base.in adds its
#             packages and changes nothing else), then the Colab sets;
#        hashes: the lock's own pins hashed afresh, no new resolution)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-both}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
NO_DEPS="mace-torch==0.3.16 matbench==0.6"
COLAB_TORCH=2.11.0   # Colab's torch (its CPU build); the Colab twin takes the package index's build of it
# Lock pins that Colab's older numpy/scipy/requests/dill cannot take: resolved afresh for Colab.
COLAB_UNPINNED="matminer pymatgen pymatgen-core pathos pox ppft multiprocess"

hash_lock() {  # requirements/lock.txt: the pins of file $1, each with the sha256 of the file pip downloads for it
  python3.11 -m pip download --no-deps --disable-pip-version-check -q -d "$tmp/dist" -r "$1"
  python3 requirements/colab_constraints.py hashes "$1" "$tmp/dist"
}

if [[ $what == both || $what == lock || $what == add ]]; then
  python3.11 -m venv "$tmp/lock"
  keep=()
  if [[ $what == add ]]; then
    grep -v '^#' requirements/lock.txt | cut -d' ' -f1 > "$tmp/keep.txt"
    keep=(-c "$tmp/keep.txt")
  fi
  "$tmp/lock/bin/pip" install -r requirements/base.in "${keep[@]}"   # upgrades the venv's setuptools to what torch needs
  "$tmp/lock/bin/pip" install --no-deps $NO_DEPS
  "$tmp/lock/bin/pip" check || true   # expected: mace-torch's e3nn pin and matbench's old pins
  # --all keeps setuptools (torch needs setuptools>=77.0.3, newer than a fresh venv's); pip itself stays out
  "$tmp/lock/bin/pip" freeze --all --exclude-editable --exclude pip | sed 's/+cpu$//' > "$tmp/pins.txt"
  hash_lock "$tmp/pins.txt"
fi

if [[ $what == hashes ]]; then
  grep -v '^#' requirements/lock.txt | cut -d' ' -f1 > "$tmp/pins.txt"
  hash_lock "$tmp/pins.txt"
fi

if [[ $what == both || $what == add || $what == colab ]]; then
  python3 requirements/colab_constraints.py
  # What the course needs on Colab: base.in without the lines marked "# not on Colab".
  grep -v "# not on Colab" requirements/base.in > "$tmp/colab.in"
  # Prefer the lock's versions of what Colab lacks, so both sets stay close.
  python3 requirements/colab_constraints.py prefer "$tmp/prefer.txt" $COLAB_UNPINNED
  "${PYTHON_COLAB:-python3.13}" -m venv "$tmp/colab"
  "$tmp/colab/bin/pip" install -r "$tmp/colab.in" "torch==$COLAB_TORCH" \
      -c requirements/colab-constraints.txt -c "$tmp/prefer.txt"
  "$tmp/colab/bin/pip" install --no-deps $NO_DEPS
  "$tmp/colab/bin/pip" freeze --exclude-editable > "$tmp/colab-freeze.txt"
  # colab.txt: what Colab does not have (no GPU libraries); colab-twin.txt: what it has, at its versions.
  python3 requirements/colab_constraints.py split "$tmp/colab-freeze.txt"
fi
