"""Machine-learned interatomic potentials: moment tensor potentials (MTP) with motep.

motep 0.2.0 ships no untrained MTP level files, so :func:`untrained_mtp` writes them; its
writer puts ``radial_coeffs`` before ``radial_funcs_count``, which its own reader rejects, so
:func:`repair_mtp` reorders a file that ``motep train`` wrote. :func:`train_mtp` trains on a
list of ASE Atoms (energy eV, forces eV/Å, stress eV/Å³ on their calculators, e.g. from
:func:`mlcourse.data.load_mlearn`) and returns motep's ASE calculator.

Training data for other codes: ``ase.io.write("train.xyz", frames)`` already writes energy,
forces and stress to extended XYZ, so the course has no wrapper for it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from pathlib import Path

import numpy as np
from ase.calculators.calculator import all_changes
from ase.data import atomic_numbers
from motep.calculator import MTP
from motep.io.mlip.mtp import read_mtp, write_mtp
from motep.train.trainer import Trainer

# The moment-tensor basis of each level, as in mlip-2's untrained_mtps/NN.mtp (Novikov et al.,
# Mach. Learn.: Sci. Technol. 2, 025002 (2021)); identical in motep's tests/data_path fitting files.
# Entries: radial_funcs_count, alpha_moments_count, alpha_index_basic, alpha_index_times,
# alpha_moment_mapping ({mu, a1, a2, a3} moments; {i, j, multiplicity, k} products).
MTP_LEVELS = {
    6: (2, 8,
        "{0, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}, {1, 0, 0, 0}",
        "{0, 0, 1, 5}, {1, 1, 1, 6}, {2, 2, 1, 6}, {3, 3, 1, 6}, {0, 5, 1, 7}",
        "0, 4, 5, 6, 7"),
    8: (2, 18,
        "{0, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}, {0, 2, 0, 0}, {0, 1, 1, 0}, "
        "{0, 1, 0, 1}, {0, 0, 2, 0}, {0, 0, 1, 1}, {0, 0, 0, 2}, {1, 0, 0, 0}",
        "{0, 0, 1, 11}, {1, 1, 1, 12}, {2, 2, 1, 12}, {3, 3, 1, 12}, {4, 4, 1, 13}, {5, 5, 2, 13}, "
        "{6, 6, 2, 13}, {7, 7, 1, 13}, {8, 8, 2, 13}, {9, 9, 1, 13}, {0, 10, 1, 14}, {0, 11, 1, 15}, "
        "{0, 12, 1, 16}, {0, 15, 1, 17}",
        "0, 10, 11, 12, 13, 14, 15, 16, 17"),
    10: (3, 41,
         "{0, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}, {0, 2, 0, 0}, {0, 1, 1, 0}, "
         "{0, 1, 0, 1}, {0, 0, 2, 0}, {0, 0, 1, 1}, {0, 0, 0, 2}, {0, 3, 0, 0}, {0, 2, 1, 0}, "
         "{0, 2, 0, 1}, {0, 1, 2, 0}, {0, 1, 1, 1}, {0, 1, 0, 2}, {0, 0, 3, 0}, {0, 0, 2, 1}, "
         "{0, 0, 1, 2}, {0, 0, 0, 3}, {1, 0, 0, 0}, {1, 1, 0, 0}, {1, 0, 1, 0}, {1, 0, 0, 1}, "
         "{2, 0, 0, 0}",
         "{0, 0, 1, 25}, {1, 1, 1, 26}, {2, 2, 1, 26}, {3, 3, 1, 26}, {1, 4, 1, 27}, {2, 5, 1, 27}, "
         "{3, 6, 1, 27}, {1, 5, 1, 28}, {2, 7, 1, 28}, {3, 8, 1, 28}, {1, 6, 1, 29}, {2, 8, 1, 29}, "
         "{3, 9, 1, 29}, {4, 4, 1, 30}, {5, 5, 2, 30}, {6, 6, 2, 30}, {7, 7, 1, 30}, {8, 8, 2, 30}, "
         "{9, 9, 1, 30}, {10, 10, 1, 31}, {11, 11, 3, 31}, {12, 12, 3, 31}, {13, 13, 3, 31}, "
         "{14, 14, 6, 31}, {15, 15, 3, 31}, {16, 16, 1, 31}, {17, 17, 3, 31}, {18, 18, 3, 31}, "
         "{19, 19, 1, 31}, {0, 20, 1, 32}, {1, 21, 1, 33}, {2, 22, 1, 33}, {3, 23, 1, 33}, "
         "{0, 25, 1, 34}, {0, 26, 1, 35}, {0, 30, 1, 36}, {1, 27, 1, 37}, {2, 28, 1, 37}, "
         "{3, 29, 1, 37}, {0, 32, 1, 38}, {0, 34, 1, 39}, {0, 35, 1, 40}",
         "0, 20, 24, 25, 26, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40"),
}

# Fast default, in motep's step format (scipy methods go through "minimize"): a linear fit of the
# energy offsets and moment coefficients, a short L-BFGS-B over all parameters, a linear refit.
DEFAULT_STEPS = (
    {"method": "LLS", "optimized": ["species_coeffs", "moment_coeffs"]},
    {"method": "minimize", "optimized": ["species_coeffs", "moment_coeffs", "radial_coeffs"],
     "kwargs": {"method": "L-BFGS-B", "options": {"maxiter": 100}}},
    {"method": "LLS", "optimized": ["species_coeffs", "moment_coeffs"]},
)


class MTPCalculator(MTP):
    """motep's MTP calculator, also for Atoms of another size than the previous ones.

    motep 0.2.0 keeps the neighbour list of the first Atoms it sees and fails on one with a
    different number of atoms ("Wrong number of cutoff radii"); this rebuilds it instead.
    """

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        if "numbers" in system_changes:
            self.engine.neighbor_list = None
        super().calculate(atoms, list(properties), system_changes)


def untrained_mtp(level: int, species: list[str], min_dist: float, max_dist: float,
                  radial_basis_size: int = 8) -> str:
    """Text of an untrained MTP level file (mlip-2 format) for ``species``.

    ``min_dist`` and ``max_dist`` (Å) bound the radial basis (max_dist is the cutoff).
    Levels 6, 8 and 10 are available; ValueError for other levels or bad bounds.
    """
    if level not in MTP_LEVELS:
        raise ValueError(f"MTP level {level} is not available; choose one of {sorted(MTP_LEVELS)}")
    if not species or not 0 < min_dist < max_dist or radial_basis_size < 1:
        raise ValueError(f"need species, 0 < min_dist < max_dist and radial_basis_size >= 1, got "
                         f"{species!r}, {min_dist}, {max_dist}, {radial_basis_size}")
    funcs, count, basic, times, mapping = MTP_LEVELS[level]
    return (
        "MTP\nversion = 1.1.0\npotential_name = MTP1m\n"
        f"species_count = {len(species)}\npotential_tag = \n"
        "radial_basis_type = RBChebyshev\n"
        f"\tmin_dist = {min_dist}\n\tmax_dist = {max_dist}\n"
        f"\tradial_basis_size = {radial_basis_size}\n\tradial_funcs_count = {funcs}\n"
        f"alpha_moments_count = {count}\n"
        f"alpha_index_basic_count = {basic.count('{')}\nalpha_index_basic = {{{basic}}}\n"
        f"alpha_index_times_count = {times.count('{')}\nalpha_index_times = {{{times}}}\n"
        f"alpha_scalar_moments = {mapping.count(',') + 1}\nalpha_moment_mapping = {{{mapping}}}\n"
    )


def repair_mtp(path: str | Path) -> Path:
    """Move ``radial_funcs_count`` above ``radial_coeffs`` in an .mtp file, in place; returns the path.

    motep 0.2.0's writer (``motep train``, ``write_mtp``) emits them the other way round, which
    its reader rejects with KeyError 'radial_funcs_count'. Files already in order are unchanged.
    """
    path = Path(path)
    lines = path.read_text().splitlines(keepends=True)
    heads = [ln.strip().split("=")[0].strip() for ln in lines]
    if "radial_coeffs" in heads and "radial_funcs_count" in heads:
        i, j = heads.index("radial_coeffs"), heads.index("radial_funcs_count")
        if j > i:
            lines.insert(i, "\t" + lines.pop(j).lstrip())
            path.write_text("".join(lines))
    return path


def min_distance(frames: list) -> float:
    """Shortest interatomic distance (Å, periodic images included) over ``frames``."""
    from ase.neighborlist import neighbor_list

    return float(min(neighbor_list("d", a, 6.0).min() for a in frames))


def load_mtp(path: str | Path, species: list[str], engine: str = "cext"):
    """motep's ASE calculator for a trained .mtp file (repaired first if written by motep 0.2.0).

    ``species`` are the chemical symbols in the order of the MTP's types (not stored in the file;
    :func:`train_mtp` orders them by atomic number).
    """
    mtp_data = read_mtp(repair_mtp(path))
    mtp_data.species = [atomic_numbers[s] for s in species]
    return MTPCalculator(mtp_data, engine=engine)


def train_mtp(frames: list, level: int = 8, max_dist: float = 5.0, radial_basis_size: int = 8,
              min_dist: float | None = None, steps=DEFAULT_STEPS, weights: dict | None = None,
              seed: int = 1, workdir: str | Path | None = None, engine: str = "cext"):
    """Train an MTP with motep on ASE Atoms carrying energy/forces/stress; returns its ASE calculator.

    ``min_dist`` defaults to the shortest distance in ``frames`` (Å). ``steps`` are motep's
    optimisation steps (see DEFAULT_STEPS; ``kwargs.options.maxiter`` bounds a scipy step), ``weights``
    motep's loss settings (defaults: energy 1, forces 0.01, stress 0.001). In ``workdir`` (default:
    a temporary folder, deleted) motep leaves ``intermediate_<step>.mtp`` and this writes
    ``initial.mtp`` and ``final.mtp``; reload the latter with :func:`load_mtp`.
    """
    species = sorted({s for a in frames for s in a.get_chemical_symbols()}, key=atomic_numbers.get)
    if min_dist is None:
        min_dist = round(min_distance(frames) - 0.05, 2)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mtp_"))
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "initial.mtp").write_text(untrained_mtp(level, species, min_dist, max_dist, radial_basis_size))
        mtp_data = read_mtp(workdir / "initial.mtp")
        mtp_data.species = [atomic_numbers[s] for s in species]
        trainer = Trainer(mtp_data, rng=np.random.default_rng(seed), engine=engine, loss=weights,
                          steps=copy.deepcopy(list(steps)))
        # motep writes intermediate_<step>.mtp into the cwd and prints step timings
        with contextlib.chdir(workdir), contextlib.redirect_stdout(io.StringIO()):
            trainer.train(frames)
        write_mtp(workdir / "final.mtp", mtp_data, legacy=True)  # legacy layout: readable by motep and mlip-2
    return MTPCalculator(mtp_data, engine=engine)
