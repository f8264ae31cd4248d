"""The Colab twin's test, run by `make colab-twin` with the twin's Python 3.13 (see the Makefile).

1. Takes away what an earlier run of the set-up cell installed (requirements/colab.txt and the kit),
   so that the twin starts as a fresh Colab runtime: Colab's packages only.
2. Runs the set-up cell, exactly as the notebooks hold it, in the notebooks' folder with
   ``COLAB_RELEASE_TAG`` set (what Colab sets) and ``MLCOURSE_KIT_SOURCE`` pointing at this checkout
   (where Colab would clone the release).
3. Checks that no package Colab preinstalls changed version.
4. Executes the notebooks named on the command line (default: all) in fast mode through the
   runner, into build/colab-twin/, and prints the usual time and memory table.
Exits non-zero if any step fails or a notebook fails (not for the budget; see the end of main).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQ = ROOT / "requirements"


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of a requirements file's ``name==version`` lines."""
    out = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, ver = line.split("==", 1)
            out[name.strip()] = ver.strip()
    return out


def setup_cell() -> str:
    """The first code cell of lesson 00, as students get it."""
    cells = json.loads((ROOT / "notebooks" / "00_data_and_representations.ipynb").read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


def main(notebooks: list[str]) -> int:
    py = sys.executable
    installed_by_setup = list(pins(REQ / "colab.txt")) + ["mlcourse"]
    subprocess.run([py, "-m", "pip", "uninstall", "-q", "-y", *installed_by_setup],
                   check=True, stderr=subprocess.DEVNULL)
    env = dict(os.environ, COLAB_RELEASE_TAG="colab-twin", MLCOURSE_KIT_SOURCE=str(ROOT))
    print("[colab-twin] running the set-up cell of the notebooks ...", flush=True)
    subprocess.run([py, "-c", setup_cell()], cwd=ROOT / "notebooks", env=env, check=True)
    changed = []
    for name, ver in pins(REQ / "colab-twin.txt").items():
        try:
            now = version(name)
        except PackageNotFoundError:
            now = "missing"
        if now.split("+")[0] != ver:
            changed.append(f"{name} {ver} -> {now}")
    if changed:
        print("[colab-twin] the set-up changed Colab's packages: " + ", ".join(changed), file=sys.stderr)
        return 1
    print("[colab-twin] set-up done; Colab's packages unchanged", flush=True)
    run_env = dict(os.environ, MLCOURSE_BUILD_DIR=str(ROOT / "build" / "colab-twin"))
    paths = [p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
             if not notebooks or any(p.name.startswith(Path(n).name.split("_")[0]) for n in notebooks)]
    done = subprocess.run([py, "-m", "mlcourse.cli", "run", "--fast", *map(str, paths)], cwd=ROOT, env=run_env)
    # The table is for information: the budget is checked on the lock's environment (.ci/run). Here torch is
    # a CUDA build whose libraries add several hundred MB of resident memory that Colab's CPU build has not.
    subprocess.run([py, str(ROOT / "scripts" / "benchmark.py"), *[p.name for p in paths]], cwd=ROOT, env=run_env)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
