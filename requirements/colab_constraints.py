"""requirements/relock.sh's Python steps: the lock's hashes and the Colab sets (constraints, preferences, split).

``python3 requirements/colab_constraints.py`` writes requirements/colab-constraints.txt from Colab's
published package list; ``... prefer OUT NAME ...`` and ``... split FREEZE`` are relock.sh's other Colab
steps; ``... hashes PINS DIST`` writes requirements/lock.txt from the pins and the files pip downloaded for them.

Colab's list (../shared/colab/pip-freeze.txt, from googlecolab/backend-info) pins every preinstalled
package; the PyTorch CPU builds appear as download URLs from the PyTorch index, which we turn into
plain pins (``torch==2.11.0`` also matches Colab's ``2.11.0+cpu``). Packages that are not on the
package index (Colab's own tools, spaCy models, git checkouts) are left out, and so are the GPU
libraries (``nvidia-*`` but nvidia-ml-py, ``cuda-*``, ``triton``): Colab's CPU build of torch does not use them, no
course package needs them, and the Colab twin's torch (the package index's build of the same
version, see the Makefile) needs its own versions of them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FREEZE = HERE.parent.parent / "shared" / "colab" / "pip-freeze.txt"
OUT = HERE / "colab-constraints.txt"
GPU_LIBRARY = re.compile(r"^(nvidia-(?!ml-py)|cuda-|triton$)")  # of a normalised name; nvidia-ml-py is no library
NO_DEPS = {"mace-torch", "matbench"}  # installed with --no-deps in both sets (relock.sh)
COLAB_HEAD = ("# Installed by the notebooks' set-up cell on Colab (mlcourse/colab.py) with --no-deps: the course's\n"
              "# packages that Colab lacks, resolved on Python 3.13 against requirements/colab-constraints.txt.\n"
              "# Made by requirements/relock.sh; do not edit.\n")
TWIN_HEAD = ("# The Colab twin's base (make colab-twin): Colab's preinstalled versions of every package the course's\n"
             "# Colab set-up uses, from requirements/colab-constraints.txt. torch comes from the package index (a CUDA\n"
             "# build that also runs on the CPU, with its GPU libraries): Colab's own CPU build is on PyTorch's index,\n"
             "# which cannot be reached here. Made by requirements/relock.sh; do not edit.\n")


def name(line: str) -> str:
    """The normalised package name of a ``name==version`` line (PEP 503)."""
    return re.sub(r"[-_.]+", "-", line.split("==")[0].strip()).lower()


def pins(path: Path) -> list[str]:
    """The ``name==version`` requirements of a requirements file (without options such as ``--hash``)."""
    return [line.split()[0] for line in path.read_text().splitlines() if "==" in line and not line.startswith("#")]


LOCK_HEAD = ("# The complete course environment, Python 3.11 on Linux x86_64 (torch: the CPU build). Made by\n"
             "# requirements/relock.sh; do not edit. Install with pip's --no-deps --require-hashes (Makefile, binder/).\n")


def hashes(pin_file: Path, dist: Path, out: Path = HERE / "lock.txt") -> None:
    """Write ``out``: each pin of ``pin_file`` with the sha256 of the file pip downloaded for it into ``dist``
    (``pip download --no-deps -r PINS -d DIST``). ValueError naming a pin without a file or a file without a pin."""
    import hashlib

    wanted = {name(line): line for line in pins(pin_file)}
    found: dict[str, list[str]] = {}
    for path in sorted(dist.iterdir()):
        stem = path.name.removesuffix(".tar.gz").removesuffix(".zip").removesuffix(".whl")
        # wheel: name-version-...; sdist: name-version (a name may hold dashes, a version does not)
        parts = stem.split("-")
        key = next((name("-".join(parts[:k])) for k in range(len(parts), 0, -1) if name("-".join(parts[:k])) in wanted),
                   None)
        if key is None:
            raise ValueError(f"{path.name} in {dist} matches no pin of {pin_file}")
        found.setdefault(key, []).append(hashlib.sha256(path.read_bytes()).hexdigest())
    lacking = sorted(set(wanted) - set(found))
    if lacking:
        raise ValueError(f"no downloaded file for {', '.join(lacking)}: rerun pip download into {dist}")
    lines = [f"{wanted[k]} " + " ".join(f"--hash=sha256:{h}" for h in sorted(found[k]))
             for k in sorted(wanted, key=lambda k: wanted[k].lower())]
    out.write_text(LOCK_HEAD + "\n".join(lines) + "\n")
    print(f"wrote {out} ({len(lines)} packages, each with its sha256)")


def constraints(freeze_text: str) -> list[str]:
    """``name==version`` for every package of a ``pip freeze`` listing that the index can serve."""
    found = []
    for line in freeze_text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "==" in line:
            if not GPU_LIBRARY.match(name(line)):
                found.append(line)
            continue
        url = re.match(r"(torch\w*) @ https://download\.pytorch\.org/whl/cpu/\w+-([\d.]+)%2Bcpu", line)
        if url:
            found.append(f"{url.group(1)}=={url.group(2)}")
    return sorted(found, key=str.lower)


def colab_has() -> set[str]:
    return {name(line) for line in pins(OUT)}


def prefer(out: Path, unpinned: list[str]) -> None:
    """Write the lock's pins of what Colab lacks (but ``unpinned``), as constraints that keep both sets close."""
    skip = colab_has() | {name(n) for n in unpinned} | NO_DEPS
    out.write_text("\n".join(line for line in pins(HERE / "lock.txt") if name(line) not in skip) + "\n")


def split(freeze: Path) -> None:
    """Split a Colab resolution into requirements/colab.txt (what Colab lacks; no GPU libraries, which
    only the index's torch build needs) and requirements/colab-twin.txt (what Colab has, at its versions)."""
    has, lines = colab_has(), pins(freeze)
    for path, head, keep in [(HERE / "colab.txt", COLAB_HEAD, [l for l in lines if name(l) not in has and not GPU_LIBRARY.match(name(l))]),
                             (HERE / "colab-twin.txt", TWIN_HEAD, [l for l in lines if name(l) in has])]:
        path.write_text(head + "\n".join(keep) + "\n")
        print(f"wrote {path} ({len(keep)} packages)")


def main(freeze: Path = FREEZE, out: Path = OUT) -> None:
    found = constraints(freeze.read_text())
    header = (f"# Colab's preinstalled packages as constraints (made by {Path(__file__).name} from\n"
              f"# ../shared/colab/pip-freeze.txt; see ../shared/colab/README.md for its source commit).\n")
    out.write_text(header + "\n".join(found) + "\n")
    print(f"wrote {out} ({len(found)} pins)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["prefer"]:
        prefer(Path(sys.argv[2]), sys.argv[3:])
    elif sys.argv[1:2] == ["split"]:
        split(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["hashes"]:
        hashes(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main(*(Path(a) for a in sys.argv[1:]))
