"""Every metric of the course, in one module that imports no torch, with one key style.

Keys are lowercase snake_case; the unit of each key with a fixed unit is in :data:`UNITS` (and
:func:`with_units` labels a table's columns with them). ``mae``, ``rmse`` and ``r2`` are in the
unit of the target they score.

- regression: :func:`regression_metrics` (lessons 01, 05, 06), transfer learning's gains over
  scratch :func:`transfer_gains` (lesson 06), and :func:`barrier_metrics` with the
  accuracy tiers of Devi et al. (lesson 07);
- interatomic potentials: :func:`potential_errors` and mlip-2's error report
  :func:`potential_error_report` (lessons 03 and 04);
- generated crystals: CDVAE's protocol (Xie et al., ICLR 2022, scripts/compute_metrics.py and
  eval_utils.py of github.com/txie-93/cdvae), reimplemented in :func:`structure_validity`,
  :func:`composition_validity`, :func:`coverage`, :func:`property_wasserstein` and
  :func:`generation_metrics` (lesson 08), with the fingerprints computed over several processes
  (:func:`structure_fingerprints`) and the reference's cached on disk (:func:`reference_fingerprints`);
  beside them the Wasserstein distance of nearest-neighbour distances (:func:`nn_distance_wasserstein`).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from ase.units import GPa
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

UNITS = {
    "energy_mae": "meV/atom", "energy_rmse": "meV/atom", "force_mae": "eV/Å", "force_rmse": "eV/Å",
    "stress_rmse": "GPa",
    "tier_small": "fraction", "tier_medium": "fraction", "tier_large": "fraction",
    "struct_valid": "fraction", "comp_valid": "fraction", "valid": "fraction",
    "cov_recall": "fraction", "cov_precision": "fraction",
    "wdist_density": "g/cm³", "wdist_num_elems": "elements", "wdist_nn_distance": "Å",
    "r2_gain_pct": "%", "mae_change_pct": "%",
}
"""The unit of each metric key with a fixed unit. Not listed: ``mae``, ``rmse`` (the target's unit),
``r2``, and CDVAE's fingerprint distances ``amsd_*`` and ``amcd_*`` (dimensionless)."""


def with_units(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` for display, each column in :data:`UNITS` labelled ``key (unit)``."""
    return table.rename(columns={k: f"{k} ({UNITS[k]})" for k in table.columns if k in UNITS})


# ------------------------------------------------------------------------------------ regression


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """``mae``, ``rmse`` (the target's unit) and ``r2`` of predictions."""
    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "r2": float(r2_score(y_true, y_pred)),
    }


def transfer_gains(fine_tuned: dict, scratch: dict) -> dict[str, float]:
    """A fine-tuned model against the scratch model of the same target, as Devi et al. (npj Comput.
    Mater. 10, 300 (2024)) compare them: ``delta_r2`` = R²(FT) − R²(scratch), ``r2_gain_pct`` = 100 ΔR² /
    abs(R²(scratch)) and ``mae_change_pct`` = 100 (MAE(FT) − MAE(scratch)) / MAE(scratch) (both %; negative
    MAE change = better). Each argument: a dict with ``r2`` and ``mae`` (:func:`regression_metrics`).
    The relative R² gain is unbounded when R²(scratch) is near 0: read it beside ``delta_r2``."""
    for name, m in (("fine_tuned", fine_tuned), ("scratch", scratch)):
        if not np.isfinite([m["r2"], m["mae"]]).all():
            raise ValueError(f"{name} has a non-finite r2 or mae: {m['r2']}, {m['mae']}")
    if scratch["r2"] == 0 or scratch["mae"] <= 0:
        raise ValueError(f"scratch r2 = {scratch['r2']}, mae = {scratch['mae']}: a relative change is undefined")
    d = fine_tuned["r2"] - scratch["r2"]
    return {"delta_r2": float(d), "r2_gain_pct": float(100 * d / abs(scratch["r2"])),
            "mae_change_pct": float(100 * (fine_tuned["mae"] - scratch["mae"]) / scratch["mae"])}


TIERS = (0.1, 0.3)  # eV: the accuracy tiers of Devi et al. (|error| <= 0.1, 0.1-0.3, > 0.3 eV)


def barrier_metrics(y_true, y_pred) -> dict[str, float]:
    """``r2``, ``mae`` and ``rmse`` (eV) of migration barriers, and the shares of predictions in the
    accuracy tiers :data:`TIERS`: ``tier_small`` |error| ≤ 0.1 eV, ``tier_medium`` 0.1–0.3 eV,
    ``tier_large`` > 0.3 eV."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if len(y_true) == 0 or len(y_true) != len(y_pred):
        raise ValueError(f"need equally long, non-empty arrays, got {len(y_true)} and {len(y_pred)}")
    if not (np.isfinite(y_true).all() and np.isfinite(y_pred).all()):
        raise ValueError("barriers contain NaN or infinite values")
    m = regression_metrics(y_true, y_pred)
    err = np.abs(y_pred - y_true)
    return {"r2": m["r2"], "mae": m["mae"], "rmse": m["rmse"], "tier_small": float(np.mean(err <= TIERS[0])),
            "tier_medium": float(np.mean((err > TIERS[0]) & (err <= TIERS[1]))),
            "tier_large": float(np.mean(err > TIERS[1]))}


# ------------------------------------------------------------------------- interatomic potentials
# ``pred`` and ``ref`` are dicts of per-atom energies (eV/atom, (n,)), forces (eV/Å, (atoms, 3)) and
# stresses (ASE's Voigt order and units, (n, 6)), as mlcourse.foundation.labels and .predict return.


def _differences(pred: dict, ref: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pred`` − ``ref``: energies per atom (meV/atom), force components (eV/Å), stress components (GPa)."""
    return (1000 * (pred["energy"] - ref["energy"]), (pred["forces"] - ref["forces"]).ravel(),
            (pred["stress"] - ref["stress"]).ravel() / GPa)


def potential_errors(pred: dict, ref: dict) -> dict[str, float]:
    """``energy_mae``, ``energy_rmse`` (meV/atom), ``force_mae``, ``force_rmse`` (eV/Å, per Cartesian
    component) and ``stress_rmse`` (GPa, per Voigt component) of ``pred`` against ``ref``."""
    if len(pred["energy"]) != len(ref["energy"]) or pred["forces"].shape != ref["forces"].shape:
        raise ValueError(f"predictions ({len(pred['energy'])} frames, {pred['forces'].shape} forces) do not match "
                         f"the reference ({len(ref['energy'])} frames, {ref['forces'].shape} forces)")
    de, df, ds = _differences(pred, ref)
    return {"energy_mae": float(np.mean(np.abs(de))), "energy_rmse": float(np.sqrt(np.mean(de**2))),
            "force_mae": float(np.mean(np.abs(df))), "force_rmse": float(np.sqrt(np.mean(df**2))),
            "stress_rmse": float(np.sqrt(np.mean(ds**2)))}


def potential_error_report(pred: dict, ref: dict) -> pd.DataFrame:
    """mlip-2's error report (``mlp calc-errors``), with its row and column labels: max, average and
    RMS absolute difference of energy per atom (meV/atom), force components (eV/Å) and stress
    components (GPa)."""
    diffs = dict(zip(["Energy per atom (meV/atom)", "Forces (eV/Å)", "Stresses (GPa)"], _differences(pred, ref)))
    counts = [f"{len(ref['energy'])} configurations", f"{len(ref['forces'])} atoms", f"{len(ref['energy'])} configurations"]
    rows = {k: {"checked for": n, "Maximal absolute difference": np.abs(d).max(),
                "Average absolute difference": np.abs(d).mean(), "RMS absolute difference": np.sqrt(np.mean(d**2))}
            for (k, d), n in zip(diffs.items(), counts)}
    return pd.DataFrame(rows).T


# ------------------------------------------------------------------------- generated crystals
# Xie et al., ICLR 2022; protocol of github.com/txie-93/cdvae scripts/compute_metrics.py and
# scripts/eval_utils.py, reimplemented here (tests/test_metrics.py checks it).

COV_CUTOFFS = {"perov_5": (0.2, 4.0), "carbon_24": (0.2, 4.0), "mp_20": (0.4, 10.0)}
"""CDVAE's coverage thresholds per dataset: (delta_struc, delta_comp), keyed by the names of its data
folders (``data/perov_5`` etc.)."""

DATASET_ALIASES = {"perovskite": "perov_5", "perov": "perov_5", "carbon": "carbon_24", "mp20": "mp_20"}
"""CDVAE's other names for its datasets (``eval_model_name`` in scripts/compute_metrics.py, and the
``conf/data/*.yaml`` files) -> the data folder's name used here."""


def cdvae_dataset(name: str) -> str:
    """The data folder's name (a key of :data:`COV_CUTOFFS`) of CDVAE dataset ``name``, which may be
    one of CDVAE's other names (:data:`DATASET_ALIASES`); ValueError listing the known names otherwise."""
    key = DATASET_ALIASES.get(str(name).lower(), str(name).lower())
    if key not in COV_CUTOFFS:
        known = ", ".join(sorted([*COV_CUTOFFS, *DATASET_ALIASES]))
        raise ValueError(f"unknown CDVAE dataset {name!r}: known names are {known}")
    return key


def structure_validity(structure, cutoff: float = 0.5, min_volume: float = 0.1) -> bool:
    """CDVAE's structural validity: every interatomic distance (periodic images included) at least
    ``cutoff`` Å and the cell volume at least ``min_volume`` Å^3."""
    if not np.isfinite(structure.lattice.matrix).all() or structure.volume < min_volume:
        return False
    if len(structure) == 1:
        return True
    d = structure.distance_matrix + np.eye(len(structure)) * (cutoff + 10.0)
    return bool(d.min() >= cutoff)


def composition_validity(composition, use_pauling_test: bool = True, include_alloys: bool = True) -> bool:
    """CDVAE's compositional validity (SMACT): some assignment of oxidation states is charge neutral
    and, with ``use_pauling_test``, puts every cation below every anion in Pauling electronegativity.

    As in CDVAE: counts are reduced by their gcd; one element, or only metals (``include_alloys``),
    is valid; the oxidation states are SMACT's original list (``oxidation_states_smact14``, the one
    CDVAE's smact 2.x used), and a pair with a missing electronegativity passes the Pauling test.
    A composition with a symbol that is no chemical element (``"Xx2"``, the dummy species X of a
    still-masked atom) is not valid.
    """
    import smact
    from pymatgen.core import Composition, Element

    comp = Composition(composition)
    if len(comp) == 0 or not all(isinstance(el, Element) for el in comp.elements):
        return False
    symbols = [el.symbol for el in comp.elements]
    counts = np.array([comp[el] for el in comp.elements])
    if np.any(np.abs(counts - np.round(counts)) > 1e-8):
        raise ValueError(f"composition {comp} has non-integer amounts")
    counts = np.round(counts).astype(int)
    counts = counts // np.gcd.reduce(counts)
    if len(symbols) == 1:
        return True
    if include_alloys and all(s in smact.metals for s in symbols):
        return True
    elements = [smact.Element(s) for s in symbols]
    ox_lists = [e.oxidation_states_smact14 or [] for e in elements]
    enegs = [e.pauling_eneg for e in elements]
    for ox in itertools.product(*ox_lists):
        if int(np.dot(ox, counts)) != 0:
            continue
        if not use_pauling_test or _pauling_ok(ox, enegs):
            return True
    return False


def _pauling_ok(ox: Sequence[int], enegs: Sequence[float | None]) -> bool:
    """Every cation (ox > 0) less electronegative than every anion (ox < 0); no data -> pass."""
    for (o1, e1), (o2, e2) in itertools.combinations(zip(ox, enegs), 2):
        if e1 is None or e2 is None:
            continue
        if (o1 > 0 > o2 and e1 >= e2) or (o1 < 0 < o2 and e1 <= e2):
            return False
    return True


def structure_fingerprint(structure) -> np.ndarray | None:
    """CDVAE's structure fingerprint: the mean over sites of matminer's CrystalNN fingerprint
    (``ops`` preset, 61 numbers); None where CrystalNN fails on the structure."""
    import warnings

    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    fp = _cached(CrystalNNFingerprint, "ops")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.mean([fp.featurize(structure, i) for i in range(len(structure))], axis=0)
    except Exception:
        return None


STRUCTURES_PER_WORKER = 250
"""The fewest structures :func:`structure_fingerprints` gives one process: CrystalNN takes ~0.1 s a
five-atom crystal, and each extra process costs its start and its memory."""


def structure_fingerprints(structures: Sequence, workers: int | None = None, progress: bool = True,
                           desc: str = "fingerprints") -> list:
    """:func:`structure_fingerprint` of each structure, in order, computed by up to ``workers``
    processes (default ``os.cpu_count()``; 1: in this process), each given at least
    :data:`STRUCTURES_PER_WORKER` structures. The numbers are the same for any ``workers``."""
    from tqdm.auto import tqdm

    workers = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive number of processes, not {workers!r}")
    bar = dict(total=len(structures), desc=desc, disable=not progress)
    workers = min(workers, len(structures) // STRUCTURES_PER_WORKER)
    if workers <= 1:
        return [structure_fingerprint(s) for s in tqdm(structures, **bar)]
    from concurrent.futures import ProcessPoolExecutor

    chunk = max(1, min(32, len(structures) // (4 * workers)))
    with ProcessPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(structure_fingerprint, structures, chunksize=chunk), **bar))


def composition_fingerprint(composition) -> np.ndarray:
    """Magpie composition fingerprint (matminer ``ElementProperty`` 'magpie', 132 numbers), unscaled."""
    from matminer.featurizers.composition.composite import ElementProperty

    return np.asarray(_cached(ElementProperty, "magpie").featurize(composition), dtype=float)


_FEATURIZERS: dict = {}


def _cached(cls, preset):
    key = (cls.__name__, preset)
    if key not in _FEATURIZERS:
        _FEATURIZERS[key] = cls.from_preset(preset)
    return _FEATURIZERS[key]


def cdvae_comp_scaler() -> tuple[np.ndarray, np.ndarray]:
    """CDVAE's means and standard deviations of the Magpie features (its CompScaler), from
    ``data/generative/cdvae_comp_scaler.json`` through the registry."""
    import json

    from . import data

    d = json.loads(data.fetch("generative/cdvae_comp_scaler.json").read_text())
    return np.array(d["means"]), np.array(d["stds"])


def scale_composition_fingerprints(fps: np.ndarray, scaler: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Standardise Magpie fingerprints as CDVAE does: (x - mean) / std, NaN -> 0."""
    mean, std = cdvae_comp_scaler() if scaler is None else scaler
    out = (np.asarray(fps, dtype=float) - mean) / std
    return np.nan_to_num(out, nan=0.0)


def coverage(gen_struct_fps, gen_comp_fps, ref_struct_fps, ref_comp_fps, struc_cutoff: float = 0.2,
             comp_cutoff: float = 4.0, n_generated: int | None = None) -> dict:
    """CDVAE's coverage recall and precision (fractions) of generated vs reference fingerprints.

    Composition fingerprints must already be scaled (:func:`scale_composition_fingerprints`).
    A generated entry whose fingerprint is None is dropped but still counts in the precision's
    denominator ``n_generated`` (default: the number of generated entries given), as in CDVAE.
    Recall: the fraction of reference crystals with a generated crystal within both cutoffs;
    precision: the fraction of generated crystals with a reference crystal within both cutoffs.
    Also returns the mean nearest distances (AMSD, AMCD) in both directions.
    """
    from scipy.spatial.distance import cdist

    if len(gen_struct_fps) != len(gen_comp_fps) or len(ref_struct_fps) != len(ref_comp_fps):
        raise ValueError("structure and composition fingerprint lists must have equal lengths")
    n_generated = len(gen_struct_fps) if n_generated is None else n_generated
    keep = [i for i, (s, c) in enumerate(zip(gen_struct_fps, gen_comp_fps)) if s is not None and c is not None]
    ref_keep = [i for i, s in enumerate(ref_struct_fps) if s is not None]
    if len(ref_keep) < len(ref_struct_fps):
        raise ValueError(f"reference fingerprints missing for entries {sorted(set(range(len(ref_struct_fps))) - set(ref_keep))}")
    if not keep:
        return {"cov_recall": 0.0, "cov_precision": 0.0}
    gs = np.array([gen_struct_fps[i] for i in keep])
    gc = np.array([gen_comp_fps[i] for i in keep])
    ds = cdist(gs, np.array(ref_struct_fps, dtype=float))
    dc = cdist(gc, np.array(ref_comp_fps, dtype=float))
    recall = np.mean((ds.min(0) <= struc_cutoff) & (dc.min(0) <= comp_cutoff))
    precision = np.sum((ds.min(1) <= struc_cutoff) & (dc.min(1) <= comp_cutoff)) / n_generated
    return {"cov_recall": float(recall), "cov_precision": float(precision),
            "amsd_recall": float(ds.min(0).mean()), "amsd_precision": float(ds.min(1).mean()),
            "amcd_recall": float(dc.min(0).mean()), "amcd_precision": float(dc.min(1).mean())}


def property_wasserstein(generated: Sequence, reference: Sequence) -> dict:
    """CDVAE's Wasserstein distances between generated and reference structures of the density
    (g/cm^3) and of the number of distinct elements. Pass only the valid generated structures."""
    from scipy.stats import wasserstein_distance

    if len(generated) == 0:
        raise ValueError("no generated structures to compare")
    return {
        "wdist_density": float(wasserstein_distance([s.density for s in generated], [s.density for s in reference])),
        "wdist_num_elems": float(wasserstein_distance([len(s.composition.elements) for s in generated],
                                                      [len(s.composition.elements) for s in reference])),
    }


def nearest_neighbour_distances(structure) -> np.ndarray:
    """(n_sites,) each site's distance (Å) to its nearest neighbour, periodic images (its own too)
    included: the shortest bond of each atom."""
    a_min = min(structure.lattice.abc)
    if not (np.isfinite(structure.lattice.matrix).all() and a_min > 0):
        raise ValueError(f"{structure.composition.reduced_formula}: degenerate lattice {structure.lattice.abc}")
    # a site's image one lattice vector away is at most min(a, b, c) away: every site has a neighbour
    # within that radius; a smaller one first, as most crystals have bonds of 1-3 Å
    r_max = 1.001 * a_min + 1e-3
    r = min(3.0, r_max)
    while True:
        centre, _, _, dist = structure.get_neighbor_list(r)
        nearest = np.full(len(structure), np.inf)
        np.minimum.at(nearest, centre, dist)
        if np.isfinite(nearest).all() or r >= r_max:
            return nearest
        r = min(2 * r, r_max)


def nn_distance_wasserstein(generated: Sequence, reference: Sequence) -> float:
    """Wasserstein distance (Å) between the nearest-neighbour distances (:func:`nearest_neighbour_distances`)
    of all sites of the ``generated`` and of the ``reference`` structures: 0 when the generated crystals'
    bonds are as long as the reference's, large when they are squeezed or stretched."""
    from scipy.stats import wasserstein_distance

    if len(generated) == 0 or len(reference) == 0:
        raise ValueError(f"need generated and reference structures, got {len(generated)} and {len(reference)}")
    gen = np.concatenate([nearest_neighbour_distances(s) for s in generated])
    ref = np.concatenate([nearest_neighbour_distances(s) for s in reference])
    return float(wasserstein_distance(gen, ref))


def generation_metrics(generated: Sequence, reference: Sequence, dataset: str = "perov_5",
                       ref_fps: tuple | None = None, progress: bool = True, workers: int | None = None) -> dict:
    """CDVAE's generation metrics of ``generated`` against ``reference`` (both lists of Structures):
    validity fractions (``struct_valid``, ``comp_valid``, ``valid``), coverage recall/precision
    with the cutoffs of ``dataset`` (:data:`COV_CUTOFFS`; CDVAE's own names such as "perovskite",
    "carbon" and "mp20" too, :func:`cdvae_dataset`), and Wasserstein distances over the valid
    generated structures: CDVAE's (:func:`property_wasserstein`) and that of the nearest-neighbour
    distances, ``wdist_nn_distance`` (Å, :func:`nn_distance_wasserstein`). ``ref_fps`` = (structure
    fps, scaled composition fps) skips recomputing the reference fingerprints. ``workers``: processes
    for the fingerprints (:func:`structure_fingerprints`). Returns a dict; ``per_structure`` holds
    each sample's flags."""
    sc, cc = COV_CUTOFFS[cdvae_dataset(dataset)]  # before the minutes of fingerprinting
    if len(generated) == 0 or len(reference) == 0:
        raise ValueError(f"need generated and reference structures, got {len(generated)} generated "
                         f"and {len(reference)} reference")
    if ref_fps is not None and len(ref_fps[0]) != len(reference):
        raise ValueError(f"ref_fps holds {len(ref_fps[0])} fingerprints for {len(reference)} reference structures")
    s_valid = np.array([structure_validity(s) for s in generated])
    c_valid = np.array([composition_validity(s.composition) for s in generated])
    # as in CDVAE, every generated crystal is fingerprinted, valid or not; None where CrystalNN fails
    gen_s = structure_fingerprints(generated, workers, progress)
    gen_c = scale_composition_fingerprints([composition_fingerprint(s.composition) for s in generated])
    if ref_fps is None:
        ref_fps = reference_fingerprints(reference, progress, workers)
    valid = s_valid & c_valid
    out = {"struct_valid": float(s_valid.mean()), "comp_valid": float(c_valid.mean()), "valid": float(valid.mean())}
    out |= coverage(gen_s, list(gen_c), *ref_fps, struc_cutoff=sc, comp_cutoff=cc, n_generated=len(generated))
    if valid.any():
        kept = [s for s, v in zip(generated, valid) if v]
        out |= property_wasserstein(kept, reference)
        out["wdist_nn_distance"] = nn_distance_wasserstein(kept, reference)
    out["per_structure"] = {"struct_valid": s_valid, "comp_valid": c_valid}
    return out


def structures_sha256(structures: Sequence) -> str:
    """sha256 (hex) of the lattices (Å), fractional coordinates and species of ``structures``, in order."""
    h = hashlib.sha256()
    for s in structures:
        h.update(np.ascontiguousarray(s.lattice.matrix, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(s.frac_coords, dtype=np.float64).tobytes())
        h.update(" ".join(str(sp) for sp in s.species).encode() + b"\n")
    return h.hexdigest()


def fingerprint_cache_dir() -> Path:
    """Where :func:`reference_fingerprints` keeps its results: ``cache/fingerprints`` in the kit's build
    folder (``$MLCOURSE_BUILD_DIR``, else ``build/``; :func:`mlcourse.results.build_dir`)."""
    from .results import build_dir

    return build_dir() / "cache" / "fingerprints"


def reference_fingerprints(reference: Sequence, progress: bool = True,
                           workers: int | None = None) -> tuple[list, np.ndarray]:
    """(CrystalNN structure fingerprints, scaled Magpie fingerprints) of reference structures.

    Computed over ``workers`` processes (:func:`structure_fingerprints`) and cached in
    :func:`fingerprint_cache_dir`, in a file named by the sha256 of the structures, the matminer
    version and the composition scaler's registered sha256: the same reference is fingerprinted once.
    """
    import matminer

    from . import data

    key = hashlib.sha256(f"{structures_sha256(reference)} matminer {matminer.__version__} scaler "
                         f"{data.registry()['generative/cdvae_comp_scaler.json'].sha256}".encode()).hexdigest()
    path = fingerprint_cache_dir() / f"{key}.npz"
    if path.is_file():
        with np.load(path) as f:
            s = [None if miss else row for row, miss in zip(f["struct"], f["missing"])]
            return s, f["comp"]
    s = structure_fingerprints(reference, workers, progress, desc="reference fingerprints")
    c = scale_composition_fingerprints([composition_fingerprint(x.composition) for x in reference])
    missing = np.array([x is None for x in s], dtype=bool)
    struct = np.array([np.full(61, np.nan) if x is None else x for x in s], dtype=float).reshape(len(s), -1)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, struct=struct, missing=missing, comp=c)
        os.replace(tmp, path)  # whole or not at all, also when two runs write it at once
    except OSError as exc:  # e.g. a read-only install: the fingerprints are still right, only not kept
        import warnings

        warnings.warn(f"reference fingerprints not cached in {path.parent}: {exc}", stacklevel=2)
    return s, c
