"""Build the Cu-Au cluster-expansion training set (EMT mixing energies).

What
----
``cuau_emt.db`` (ASE SQLite database, next to this script): every symmetrically
distinct binary Cu-Au decoration of the fcc lattice with 1 to 8 atoms per cell
(631 structures, the pure elements included), each with its EMT mixing energy.
It is the training set of the cluster-expansion + Monte Carlo lesson.

How
---
1. ``icet.tools.enumerate_structures`` lists the derivative structures of a
   primitive fcc cell with lattice parameter ``A_IDEAL`` (3.8 A, between the
   EMT values of Cu, 3.59 A, and Au, 4.06 A).
2. Each structure is relaxed with ASE's EMT calculator, positions and cell
   together (``ase.filters.FrechetCellFilter`` + ``ase.optimize.BFGS``,
   fmax = 0.01 eV/A).
3. The mixing energy per atom is ``E/N - (1 - c) E_Cu - c E_Au``, with ``c`` the
   Au fraction and ``E_Cu``, ``E_Au`` the energies per atom of relaxed pure Cu
   and Au (the two one-atom structures of the enumeration).
4. Each row stores the *ideal* (unrelaxed) lattice structure, which is what a
   cluster expansion is fitted on, plus the key-value pairs

   - ``mixing_energy``: mixing energy, eV/atom (relaxed, EMT)
   - ``concentration``: Au fraction, 0..1
   - ``energy_per_atom``: relaxed EMT energy, eV/atom
   - ``volume_per_atom``: relaxed volume, A^3/atom
   - ``structure_id``: position in the enumeration (0-based)
   - ``relax_steps``, ``converged``: optimiser bookkeeping

   and, in ``row.data``, the relaxed cell and positions.

Run from the repository root::

    python data/cluster_expansion/make_cuau_emt.py

It takes about 1-2 minutes on one core. Nothing in it is random; the run-specific
fields an ASE database normally stores (creation time, user name, random unique
id) are overwritten with fixed values, so reruns with the same library versions
give a byte-identical file.

This follows the "prepare reference data" step of the icet Ag-Pd tutorial, on Cu-Au instead:
with EMT, Ag-Pd phase-separates (all mixing energies >= 0), while Cu-Au orders (L1_2 Cu3Au,
L1_0 CuAu below zero), which the lesson needs for an order-disorder transition.
M. Angqvist, W. A. Munoz, J. M. Rahm, E. Fransson, C. Durniak, P. Rozyczko,
T. H. Rod, P. Erhart, "ICET - A Python Library for Constructing and Sampling
Alloy Cluster Expansions", Adv. Theory Simul. 2, 1900015 (2019),
doi:10.1002/adts.201900015; https://icet.materialsmodeling.org.
EMT: K. W. Jacobsen, P. Stoltze, J. K. Norskov, Surf. Sci. 366, 394 (1996).
"""

import os

# One BLAS thread: the matrices are tiny and the results stay reproducible.
for _var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_var, '1')

import random  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from ase.db import connect  # noqa: E402
from ase.filters import FrechetCellFilter  # noqa: E402
from ase.optimize import BFGS  # noqa: E402
from icet.tools import enumerate_structures  # noqa: E402

SEED = 0
A_IDEAL = 3.8  # A, lattice parameter of the ideal fcc lattice
SPECIES = ['Cu', 'Au']
SIZES = range(1, 9)  # atoms per cell
FMAX = 0.01  # eV/A
MAX_STEPS = 1000
OUT = Path(__file__).resolve().parent / 'cuau_emt.db'


def relax(structure):
    """Relax positions and cell with EMT; return the relaxed copy and the step count."""
    atoms = structure.copy()
    atoms.calc = EMT()
    opt = BFGS(FrechetCellFilter(atoms), logfile=None)
    converged = opt.run(fmax=FMAX, steps=MAX_STEPS)
    return atoms, opt.get_number_of_steps(), bool(converged)


def make_reproducible(path):
    """Replace the time-, user- and uuid-dependent columns with fixed values."""
    con = sqlite3.connect(path)
    con.execute("UPDATE systems SET unique_id = printf('agpd-emt-%04d', id), "
                "ctime = 0.0, mtime = 0.0, username = 'mlcourse'")
    con.commit()
    con.execute('VACUUM')
    con.close()


def main():
    random.seed(SEED)
    np.random.seed(SEED)
    t0 = time.perf_counter()

    prim = bulk(SPECIES[0], 'fcc', a=A_IDEAL)
    rows = []
    for k, ideal in enumerate(enumerate_structures(prim, SIZES, SPECIES)):
        relaxed, steps, converged = relax(ideal)
        n = len(ideal)
        rows.append(dict(
            ideal=ideal, relaxed=relaxed, steps=steps, converged=converged,
            conc=ideal.get_chemical_symbols().count('Au') / n,
            e_atom=relaxed.get_potential_energy() / n,
            v_atom=relaxed.get_volume() / n))
        if (k + 1) % 100 == 0:
            print(f'{k + 1} structures relaxed, {time.perf_counter() - t0:.0f} s', flush=True)

    pure = {r['conc']: r['e_atom'] for r in rows if len(r['ideal']) == 1}
    e_cu, e_au = pure[0.0], pure[1.0]

    if OUT.exists():
        OUT.unlink()
    with connect(OUT) as db:
        for k, r in enumerate(rows):
            c = r['conc']
            emix = r['e_atom'] - (1 - c) * e_cu - c * e_au
            db.write(r['ideal'],
                     structure_id=k,
                     mixing_energy=float(emix),
                     concentration=float(c),
                     energy_per_atom=float(r['e_atom']),
                     volume_per_atom=float(r['v_atom']),
                     relax_steps=int(r['steps']),
                     converged=r['converged'],
                     data={'relaxed_cell': np.array(r['relaxed'].cell),
                           'relaxed_positions': r['relaxed'].get_positions()})
    make_reproducible(OUT)

    n_bad = sum(not r['converged'] for r in rows)
    emix = np.array([r['e_atom'] - (1 - r['conc']) * e_cu - r['conc'] * e_au for r in rows])
    dt = time.perf_counter() - t0
    print(f'wrote {len(rows)} structures to {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)')
    print(f'E_Cu = {e_cu:.5f} eV/atom, E_Au = {e_au:.5f} eV/atom; '
          f'mixing energy {1e3 * emix.min():.1f} .. {1e3 * emix.max():.1f} meV/atom; '
          f'{n_bad} relaxations not converged')
    print(f'wall time: {dt:.1f} s')
    return 0 if n_bad == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
