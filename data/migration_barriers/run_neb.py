"""Foundation-potential baseline for lesson 07: CHGNet NEB barriers of the smallest test pathways.

Computes Em with ASE's climbing-image NEB (end points relaxed, 5 inner images) and CHGNet 0.3.0,
whose weights ship in the chgnet wheel (offline), for the N_PATHWAYS test pathways with the fewest
atoms, and writes ``neb_chgnet.json`` beside this script. The notebook reads that file (in both modes:
the NEBs take several minutes per pathway on a laptop).

    python data/migration_barriers/run_neb.py [N_PATHWAYS]      # default 6; ~1-3 min per pathway on 2 cores
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

OUT = Path(__file__).with_name("neb_chgnet.json")


def main(n_pathways: int = 6, out: Path = OUT) -> list[dict]:
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    from mlcourse import data, migration

    warnings.filterwarnings("ignore", category=UserWarning)
    ends = data.load_migration_endpoints()
    ends = ends.assign(n_atoms=ends.initial.map(len)).sort_values(["n_atoms", "sys_name"]).head(n_pathways)
    calc = CHGNetCalculator(model=CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False), use_device="cpu")
    rows = []
    for _, r in ends.iterrows():
        t0 = time.perf_counter()
        em, profile = migration.neb_barrier(AseAtomsAdaptor.get_atoms(r.initial), AseAtomsAdaptor.get_atoms(r.final),
                                            calc, n_images=5, fmax=0.1, steps=150)
        rows.append({"sys_name": r.sys_name, "n_atoms": int(r.n_atoms), "target": r.target, "chgnet_neb": em,
                     "profile": [round(float(x), 5) for x in profile], "seconds": round(time.perf_counter() - t0, 1)})
        _write(out, rows)
        print(f"{r.sys_name}: {len(r.initial)} atoms, CHGNet Em {em:.3f} eV (NEB reference {r.target:.3f} eV), "
              f"{rows[-1]['seconds']} s", flush=True)
    return rows


def _write(out: Path, rows: list[dict]) -> None:
    """Save after every pathway, so an interrupted run keeps what it finished."""
    out.write_text(json.dumps({"model": "CHGNet 0.3.0", "neb": "ASE NEB, climbing image, 5 inner images, "
                               "improved tangent, FIRE to fmax 0.1 eV/Å (150 steps max), end points relaxed",
                               "pathways": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
