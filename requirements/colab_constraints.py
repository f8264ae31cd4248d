"""Write requirements/colab-constraints.txt from Colab's published package list.

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
GPU_LIBRARIES = re.compile(r"^(nvidia-(?!ml-py)|cuda-|triton==)", re.IGNORECASE)


def constraints(freeze_text: str) -> list[str]:
    """``name==version`` for every package of a ``pip freeze`` listing that the index can serve."""
    pins = []
    for line in freeze_text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if GPU_LIBRARIES.match(line):
            continue
        if "==" in line:
            pins.append(line)
            continue
        url = re.match(r"(torch\w*) @ https://download\.pytorch\.org/whl/cpu/\w+-([\d.]+)%2Bcpu", line)
        if url:
            pins.append(f"{url.group(1)}=={url.group(2)}")
    return sorted(pins, key=str.lower)


def main(freeze: Path = FREEZE, out: Path = OUT) -> None:
    pins = constraints(freeze.read_text())
    header = (f"# Colab's preinstalled packages as constraints (made by {Path(__file__).name} from\n"
              f"# ../shared/colab/pip-freeze.txt; see ../shared/colab/README.md for its source commit).\n")
    out.write_text(header + "\n".join(pins) + "\n")
    print(f"wrote {out} ({len(pins)} pins)")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:]))
