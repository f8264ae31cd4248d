"""Install the kit into a Google Colab runtime, keeping Colab's own packages.

Every notebook's first code cell is :data:`SETUP_CELL`, written here once
(``python -m mlcourse.colab --write-cells`` puts it into the notebooks; a test checks they agree). On
Colab that cell clones the kit's release and runs this file (``python mlcourse/colab.py``), which
uses nothing but the standard library: it runs before the kit is installed. Colab already has torch (CPU build), numpy, scipy, pandas, scikit-learn,
matplotlib and several hundred other packages. ``requirements/colab.txt`` lists what the course needs
on top of them, resolved against ``requirements/colab-constraints.txt`` (Colab's published versions)
by ``requirements/relock.sh``, so installing it with ``--no-deps`` changes none of Colab's packages.
chgnet and icet have no wheel for Python 3.13: pip compiles them here (about two minutes, once per
Colab session; Colab has the compilers).

Outside Colab it installs nothing and exits with :data:`NOT_INSTALLED`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
COLAB_REQUIREMENTS = KIT / "requirements" / "colab.txt"
PYTHONS = ((3, 11), (3, 12), (3, 13))
NOT_INSTALLED = ("mlcourse/colab.py installs the kit on Colab only; elsewhere follow README.md, 'Setup' "
                 "(`make course`, then the kernel 'Python 3 (mlcourse)').")

RELEASE = "v0.2.0"  # the git tag the notebooks clone on Colab; equals pyproject.toml's version (tested)
REPOSITORY = "mlcourse-kit/mlcourse"  # on GitHub: what Colab and Binder open
SETUP_CELL = '''# Set-up. Locally, on Binder or on a workshop hub the kit is installed and this cell does nothing.
# On Colab it clones this notebook's release of the kit and installs what Colab lacks (mlcourse/colab.py).
import importlib, importlib.util, os, subprocess, sys
KIT_RELEASE = "{release}"
if importlib.util.find_spec("mlcourse") is None:
    if not os.environ.get("COLAB_RELEASE_TAG"):
        raise ModuleNotFoundError("The mlcourse kit is not installed in this kernel, and outside Colab this cell installs "
                                  "nothing. See README.md, 'Setup': `make course`, then choose the kernel 'Python 3 (mlcourse)'.")
    kit = os.environ.get("MLCOURSE_KIT_SOURCE", "mlcourse-kit")  # the Colab twin (make colab-twin) passes a local checkout
    if not os.path.isdir(kit):
        subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", KIT_RELEASE,
                        "https://github.com/{repository}", kit], check=True)
    subprocess.run([sys.executable, os.path.join(kit, "mlcourse", "colab.py")], check=True)
    sys.path.insert(0, os.path.abspath(kit))
    importlib.invalidate_caches()'''.replace("{release}", RELEASE).replace("{repository}", REPOSITORY)


def launch_urls(notebook: str) -> dict[str, str]:
    """The addresses that open ``notebook`` (a file name in notebooks/) of this release on Colab and Binder."""
    return {"Colab": f"https://colab.research.google.com/github/{REPOSITORY}/blob/{RELEASE}/notebooks/{notebook}",
            "Binder": f"https://mybinder.org/v2/gh/{REPOSITORY}/{RELEASE}?labpath=notebooks%2F{notebook}"}


def launch_badges(notebook: str) -> str:
    """Markdown badges that open ``notebook`` (a file name in notebooks/) of this release on Colab and Binder."""
    url = launch_urls(notebook)
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url['Colab']}) "
            f"[![Binder](https://mybinder.org/badge_logo.svg)]({url['Binder']})")


def on_colab() -> bool:
    """True inside a Google Colab runtime (Colab sets ``COLAB_RELEASE_TAG`` in every kernel)."""
    return bool(os.environ.get("COLAB_RELEASE_TAG"))


def pip(*args: str) -> None:
    """Run pip of this interpreter; raise CalledProcessError (with pip's own message above it) on failure."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args], check=True)


def install(requirements: Path = COLAB_REQUIREMENTS, kit: Path = KIT) -> None:
    """Install ``requirements`` (the course's packages that Colab lacks), then the kit itself (editable)."""
    if sys.version_info[:2] not in PYTHONS:
        raise RuntimeError(f"Python {sys.version.split()[0]} is not supported; the kit runs on 3.11-3.13")
    print(f"mlcourse set-up: installing what Colab lacks from {requirements} "
          "(3-5 minutes, once per session; chgnet and icet are compiled) ...", flush=True)
    pip("-q", "--no-deps", "-r", str(requirements))
    pip("-q", "--no-deps", "-e", str(kit))
    print("mlcourse set-up: done", flush=True)


def write_cells(notebook_dir: Path = KIT / "notebooks") -> list[Path]:
    """Put :data:`SETUP_CELL` into the first code cell of every lesson notebook and its
    :func:`launch_badges` into the title cell's badge line; return the notebooks changed."""
    import re

    import nbformat

    changed = []
    for path in sorted(notebook_dir.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if c.cell_type == "code")
        title = nb.cells[0]
        badges = re.sub(r"^\[!\[Open In Colab\].*$", lambda m: launch_badges(path.name), title.source, flags=re.M)
        if cell.source != SETUP_CELL or badges != title.source:
            cell.source, title.source = SETUP_CELL, badges
            nbformat.write(nb, path)
            changed.append(path)
    return changed


if __name__ == "__main__":
    if "--write-cells" in sys.argv:
        sys.exit(print("\n".join(map(str, write_cells()))))
    if not on_colab():
        sys.exit(NOT_INSTALLED)
    install()
