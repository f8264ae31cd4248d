"""Small "your own data" files for the workshop (docs/workshop.md), none of them a course dataset.

    python scripts/make_workshop_data.py [--out workshop_data] [--no-neb]

Writes, in a few minutes on one core (the 49 NEB barriers take most of it):

- ``band_gaps.csv``: formula, gap_eV — approximate room-temperature experimental band gaps of 28
  textbook semiconductors and insulators, typed in here (for practice, not for publication);
- ``rocksalt/``: 14 primitive rock-salt CIFs built from their experimental lattice constants, and
  ``rocksalt/targets.csv`` (file, gap_eV: approximate experimental band gaps);
- ``cu_emt.extxyz``: 40 strained and rattled 8-atom Cu cells with EMT energies, forces and stresses
  (EMT stands in for your DFT code);
- ``cuni_emt.extxyz``: every Cu–Ni fcc decoration with up to 6 sites on the ideal lattice, with EMT
  energies and mixing energies (``info["mixing_energy"]``, eV/atom) for a cluster expansion;
- ``fcc_vacancy_barriers.csv``: host, ion, Em_eV — EMT nudged-elastic-band barriers of a vacancy hop
  of one atom (the ion) into its nearest-neighbour vacancy in a 31-atom fcc host, for 7 metals as
  host and as ion (49 pathways; ``--no-neb`` skips them).

Every file is made from numbers typed here or computed by ASE's EMT potential: nothing is copied
from ../shared/data.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

BAND_GAPS = {  # eV, approximate experimental values near room temperature (textbook tables)
    "Si": 1.12, "Ge": 0.66, "C": 5.47, "SiC": 2.36, "GaAs": 1.42, "GaP": 2.26, "GaN": 3.4, "GaSb": 0.73,
    "InP": 1.34, "InAs": 0.35, "InSb": 0.17, "AlN": 6.0, "AlP": 2.45, "AlAs": 2.16, "ZnO": 3.37, "ZnS": 3.6,
    "ZnSe": 2.7, "ZnTe": 2.25, "CdS": 2.42, "CdSe": 1.74, "CdTe": 1.5, "MgO": 7.8, "NaCl": 8.5, "LiF": 13.6,
    "TiO2": 3.0, "SnO2": 3.6, "Cu2O": 2.1, "PbS": 0.41,
}
ROCKSALT = {  # formula: (lattice constant in Å, approximate experimental band gap in eV)
    "LiF": (4.03, 13.6), "NaF": (4.63, 11.5), "KF": (5.35, 10.8), "LiCl": (5.13, 9.4), "NaCl": (5.64, 8.5),
    "KCl": (6.29, 8.4), "RbCl": (6.58, 8.2), "NaBr": (5.97, 7.1), "KBr": (6.60, 7.4), "MgO": (4.21, 7.8),
    "CaO": (4.81, 7.0), "SrO": (5.16, 5.9), "BaO": (5.52, 4.4), "PbS": (5.94, 0.41),
}
METALS = ["Cu", "Ag", "Au", "Ni", "Pd", "Pt", "Al"]  # the elements of ASE's EMT


def write_band_gaps(out: Path) -> Path:
    path = out / "band_gaps.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["formula", "gap_eV"])
        w.writerows(BAND_GAPS.items())
    return path


def write_rocksalt(out: Path) -> Path:
    from pymatgen.core import Composition, Lattice, Structure

    folder = out / "rocksalt"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for formula, (a, gap) in ROCKSALT.items():
        cation, anion = [el.symbol for el in Composition(formula).elements]
        s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])
        s = s.get_primitive_structure()
        s.to(filename=str(folder / f"{formula}.cif"))
        rows.append((f"{formula}.cif", gap))
    with (folder / "targets.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "gap_eV"])
        w.writerows(rows)
    return folder


def write_cu_emt(out: Path, n: int = 40, seed: int = 0) -> Path:
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
        strain = np.eye(3) + np.diag(rng.uniform(-0.03, 0.03, 3))
        a.set_cell(a.cell.array @ strain, scale_atoms=True)
        a.rattle(0.02 + 0.08 * k / n, seed=int(rng.integers(1 << 30)))
        a.calc = EMT()
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        a.info["config_type"] = "strained+rattled"
        frames.append(a)
    path = out / "cu_emt.extxyz"
    write(path, frames, format="extxyz")
    return path


def write_cuni_emt(out: Path, max_sites: int = 6) -> Path:
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.io import write
    from icet.tools import enumerate_structures

    prim = bulk("Cu", "fcc", a=3.56)  # between Cu (3.61 Å) and Ni (3.52 Å): a small size mismatch
    pure = {}
    for el in ("Cu", "Ni"):
        a = prim.copy()
        a.symbols[:] = el
        a.calc = EMT()
        pure[el] = a.get_potential_energy() / len(a)
    frames = []
    for atoms in enumerate_structures(prim, range(1, max_sites + 1), ["Cu", "Ni"]):
        atoms.calc = EMT()
        e = atoms.get_potential_energy() / len(atoms)
        x = atoms.get_chemical_symbols().count("Ni") / len(atoms)
        atoms.info["energy_per_atom"] = e
        atoms.info["mixing_energy"] = e - (1 - x) * pure["Cu"] - x * pure["Ni"]
        atoms.calc = None
        frames.append(atoms)
    path = out / "cuni_emt.extxyz"
    write(path, frames, format="extxyz")
    return path


def write_vacancy_barriers(out: Path) -> Path:
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from mlcourse.migration import neb_barrier

    rows = []
    for host in METALS:
        a0 = {"Cu": 3.61, "Ag": 4.09, "Au": 4.08, "Ni": 3.52, "Pd": 3.89, "Pt": 3.92, "Al": 4.05}[host]
        cell = bulk(host, "fcc", a=a0, cubic=True).repeat(2)  # 32 sites
        for ion in METALS:
            initial = cell.copy()
            initial.symbols[1] = ion  # the hopping atom: site 1, a nearest neighbour of site 0
            vacancy = initial.positions[0].copy()
            del initial[0]  # the vacancy; the ion is now atom 0
            final = initial.copy()
            final.positions[0] = vacancy
            em, _ = neb_barrier(initial, final, EMT(), n_images=3, fmax=0.05, steps=300)
            rows.append((host, ion, round(em, 4)))
    path = out / "fcc_vacancy_barriers.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["host", "ion", "Em_eV"])
        w.writerows(rows)
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="workshop_data")
    p.add_argument("--no-neb", action="store_true", help="skip the 49 EMT NEB barriers")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    makers = [write_band_gaps, write_rocksalt, write_cu_emt, write_cuni_emt]
    if not args.no_neb:
        makers.append(write_vacancy_barriers)
    for make in makers:
        print(make(out))


if __name__ == "__main__":
    main()
