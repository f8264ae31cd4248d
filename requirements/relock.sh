#!/usr/bin/env bash
# Re-resolve requirements/base.in into the two installed sets (see README, "Pins"):
#   requirements/lock.txt   the complete local environment, Python 3.11 (make install, Binder, conda)
#   requirements/colab.txt  what Colab (Python 3.13) lacks, resolved against Colab's own versions
#   requirements/colab-twin.txt  Colab's versions of the rest of that resolution (the Colab twin's base)
#                           (requirements/colab-constraints.txt, from ../shared/colab/pip-freeze.txt)
# mace-torch and matbench go in with --no-deps in both: their declared pins conflict with the stack on purpose.
# Usage: bash requirements/relock.sh [lock|colab]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-both}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
NO_DEPS="mace-torch==0.3.16 matbench==0.6"
COLAB_TORCH=2.11.0   # Colab's torch (its CPU build); the Colab twin takes the package index's build of it
# Lock pins that Colab's older numpy/scipy/requests/dill cannot take: resolved afresh for Colab.
COLAB_UNPINNED="matminer pymatgen pymatgen-core pathos pox ppft multiprocess"

if [[ $what == both || $what == lock ]]; then
  python3.11 -m venv "$tmp/lock"
  "$tmp/lock/bin/pip" install -r requirements/base.in
  "$tmp/lock/bin/pip" install --no-deps $NO_DEPS
  "$tmp/lock/bin/pip" check || true   # expected: mace-torch's e3nn pin and matbench's old pins
  "$tmp/lock/bin/pip" freeze --exclude-editable | sed 's/+cpu$//' > requirements/lock.txt
  echo "wrote requirements/lock.txt ($(wc -l < requirements/lock.txt) packages)"
fi

if [[ $what == both || $what == colab ]]; then
  python3 requirements/colab_constraints.py
  # What the course needs on Colab: base.in without the lines marked "# not on Colab".
  grep -v "# not on Colab" requirements/base.in > "$tmp/colab.in"
  # Prefer the lock's versions of what Colab lacks, so both sets stay close.
  python3 - "$tmp/prefer.txt" $COLAB_UNPINNED <<'EOF'
import re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
has = {norm(l.split("==")[0]) for l in open("requirements/colab-constraints.txt") if "==" in l}
skip = {norm(n) for n in sys.argv[2:]} | {"mace-torch", "matbench"}
keep = [l.strip() for l in open("requirements/lock.txt") if "==" in l and norm(l.split("==")[0]) not in has | skip]
open(sys.argv[1], "w").write("\n".join(keep) + "\n")
EOF
  "${PYTHON_COLAB:-python3.13}" -m venv "$tmp/colab"
  "$tmp/colab/bin/pip" install -r "$tmp/colab.in" "torch==$COLAB_TORCH" \
      -c requirements/colab-constraints.txt -c "$tmp/prefer.txt"
  "$tmp/colab/bin/pip" install --no-deps $NO_DEPS
  "$tmp/colab/bin/pip" freeze --exclude-editable > "$tmp/colab-freeze.txt"
  # Keep what Colab does not have; drop the GPU libraries that only the index's torch build needs.
  python3 - "$tmp/colab-freeze.txt" <<'EOF'
import re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
has = {norm(l.split("==")[0]) for l in open("requirements/colab-constraints.txt") if "==" in l}
gpu = re.compile(r"^(nvidia-(?!ml-py)|cuda-|triton$)")  # CUDA libraries: only the index build of torch needs them
lines = [l.strip() for l in open(sys.argv[1]) if "==" in l]
keep = [l for l in lines if norm(l.split("==")[0]) not in has and not gpu.match(norm(l.split("==")[0]))]
head = ("# Installed by the notebooks' set-up cell on Colab (mlcourse/colab.py) with --no-deps: the course's\n"
        "# packages that Colab lacks, resolved on Python 3.13 against requirements/colab-constraints.txt.\n"
        "# Made by requirements/relock.sh; do not edit.\n")
open("requirements/colab.txt", "w").write(head + "\n".join(keep) + "\n")
print(f"wrote requirements/colab.txt ({len(keep)} packages)")
# The Colab twin's base: the same resolution's packages that Colab has, at Colab's versions.
twin = [l for l in lines if norm(l.split("==")[0]) in has]
head = ("# The Colab twin's base (make colab-twin): Colab's preinstalled versions of every package the course's\n"
        "# Colab set-up uses, from requirements/colab-constraints.txt. torch comes from the package index (a CUDA\n"
        "# build that also runs on the CPU, with its GPU libraries): Colab's own CPU build is on PyTorch's index,\n"
        "# which cannot be reached here. Made by requirements/relock.sh; do not edit.\n")
open("requirements/colab-twin.txt", "w").write(head + "\n".join(twin) + "\n")
print(f"wrote requirements/colab-twin.txt ({len(twin)} packages)")
EOF
fi
