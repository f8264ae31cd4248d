"""Every metric of the course, in one module that imports no torch, with one key style.

Keys are lowercase snake_case; the unit of each key with a fixed unit is in :data:`UNITS` (and
:func:`with_units` labels a table's columns with them). ``mae``, ``rmse`` and ``r2`` are in the
unit of the target they score.

- regression: :func:`regression_metrics` (lessons 01, 05, 06) and :func:`barrier_metrics` with the
  accuracy tiers of Devi et al. (lesson 07);
- interatomic potentials: :func:`potential_errors` and mlip-2's error report
  :func:`potential_error_report` (lessons 03 and 04);
- generated crystals: CDVAE's protocol (Xie et al., ICLR 2022, scripts/compute_metrics.py and
  eval_utils.py of github.com/txie-93/cdvae), reimplemented in :func:`structure_validity`,
  :func:`composition_validity`, :func:`coverage`, :func:`property_wasserstein` and
  :func:`generation_metrics` (lesson 08).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

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
    "wdist_density": "g/cm³", "wdist_num_elems": "elements",
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
"""CDVAE's coverage thresholds per dataset: (delta_struc, delta_comp)."""


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
    """
    import smact
    from pymatgen.core import Composition

    comp = Composition(composition)
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


def generation_metrics(generated: Sequence, reference: Sequence, dataset: str = "perov_5",
                       ref_fps: tuple | None = None, progress: bool = True) -> dict:
    """CDVAE's generation metrics of ``generated`` against ``reference`` (both lists of Structures):
    validity fractions (``struct_valid``, ``comp_valid``, ``valid``), coverage recall/precision
    with the dataset's cutoffs (:data:`COV_CUTOFFS`), and Wasserstein distances over the valid
    generated structures. ``ref_fps`` = (structure fps, scaled composition fps) skips recomputing
    the reference fingerprints. Returns a dict; ``per_structure`` holds each sample's flags."""
    from tqdm.auto import tqdm

    s_valid = np.array([structure_validity(s) for s in generated])
    c_valid = np.array([composition_validity(s.composition) for s in generated])
    # as in CDVAE, every generated crystal is fingerprinted, valid or not; None where CrystalNN fails
    gen_s = [structure_fingerprint(s) for s in tqdm(generated, desc="fingerprints", disable=not progress)]
    gen_c = scale_composition_fingerprints([composition_fingerprint(s.composition) for s in generated])
    if ref_fps is None:
        ref_fps = reference_fingerprints(reference, progress)
    sc, cc = COV_CUTOFFS[dataset]
    valid = s_valid & c_valid
    out = {"struct_valid": float(s_valid.mean()), "comp_valid": float(c_valid.mean()), "valid": float(valid.mean())}
    out |= coverage(gen_s, list(gen_c), *ref_fps, struc_cutoff=sc, comp_cutoff=cc, n_generated=len(generated))
    if valid.any():
        out |= property_wasserstein([s for s, v in zip(generated, valid) if v], reference)
    out["per_structure"] = {"struct_valid": s_valid, "comp_valid": c_valid}
    return out


def reference_fingerprints(reference: Sequence, progress: bool = True) -> tuple[list, np.ndarray]:
    """(CrystalNN structure fingerprints, scaled Magpie fingerprints) of reference structures."""
    from tqdm.auto import tqdm

    s = [structure_fingerprint(x) for x in tqdm(reference, desc="reference fingerprints", disable=not progress)]
    c = scale_composition_fingerprints([composition_fingerprint(x.composition) for x in reference])
    return s, c
