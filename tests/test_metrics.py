"""Every metric (mlcourse.metrics): regression, migration-barrier tiers, CDVAE's generation metrics; no torch."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition, Lattice, Structure

from mlcourse import metrics


def perovskite(a=3.9, species=("Sr", "Ti", "O", "O", "O")):
    return Structure(Lattice.cubic(a), list(species),
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def rocksalt(a=5.64):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_metrics_import_no_torch():
    code = "import sys, mlcourse.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_keys_are_snake_case_and_units_label_columns():
    assert all(k == k.lower() and " " not in k for k in metrics.UNITS)
    table = pd.DataFrame([{"energy_mae": 1.0, "force_rmse": 0.1, "r2": 0.5}])
    assert list(metrics.with_units(table).columns) == ["energy_mae (meV/atom)", "force_rmse (eV/Å)", "r2"]
    assert list(table.columns) == ["energy_mae", "force_rmse", "r2"]  # a copy: the table keeps its keys


# ------------------------------------------------------------------------------ regression


def test_regression_metrics_known_values():
    m = metrics.regression_metrics([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 5.0])
    assert m["mae"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(1.0)
    assert m["r2"] == pytest.approx(1 - 4 / 5)


def test_barrier_metrics_and_tiers():
    m = metrics.barrier_metrics([1.0, 1.0, 1.0, 1.0], [1.05, 1.2, 1.5, 0.5])
    assert m["mae"] == pytest.approx((0.05 + 0.2 + 0.5 + 0.5) / 4)
    assert (m["tier_small"], m["tier_medium"], m["tier_large"]) == (0.25, 0.25, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        metrics.barrier_metrics([1.0, np.nan], [1.0, 1.0])
    with pytest.raises(ValueError, match="non-empty"):
        metrics.barrier_metrics([], [])


def test_transfer_gains_against_scratch():
    g = metrics.transfer_gains({"r2": 0.6, "mae": 0.09}, {"r2": 0.5, "mae": 0.1})
    assert g == pytest.approx({"delta_r2": 0.1, "r2_gain_pct": 20.0, "mae_change_pct": -10.0})
    # a negative scratch R²: the gain is relative to its magnitude, so a better model still gains
    assert metrics.transfer_gains({"r2": 0.0, "mae": 0.1}, {"r2": -0.5, "mae": 0.1})["r2_gain_pct"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="undefined"):
        metrics.transfer_gains({"r2": 0.1, "mae": 0.1}, {"r2": 0.0, "mae": 0.1})
    with pytest.raises(ValueError, match="fine_tuned has a non-finite"):
        metrics.transfer_gains({"r2": np.nan, "mae": 0.1}, {"r2": 0.5, "mae": 0.1})


# ------------------------------------------------------------------------------ CDVAE's metrics of generated crystals


def test_structure_validity_known_good_and_bad():
    assert metrics.structure_validity(perovskite())
    assert metrics.structure_validity(rocksalt())
    # two atoms 0.3 Å apart, the second only through the periodic boundary
    close = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0.01, 0, 0], [0.95, 0, 0]])
    assert close.distance_matrix[0, 1] == pytest.approx(0.24)
    assert not metrics.structure_validity(close)
    assert metrics.structure_validity(Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0.0, 0, 0], [0.13, 0, 0]]))  # 0.52 Å
    tiny = Structure(Lattice.cubic(0.4), ["Fe"], [[0, 0, 0]])  # 0.064 Å^3
    assert not metrics.structure_validity(tiny)


@pytest.mark.parametrize("formula,valid", [
    ("SrTiO3", True), ("NaCl", True), ("Fe2O3", True), ("BaZrO3", True), ("LaAlO3", True),
    ("Fe", True), ("CuZn", True),           # one element; only metals (an alloy)
    ("NaCl2", False), ("CaF3", False), ("LiF2", False), ("KO3F", False), ("O3F", False),
    ("Xx2", False), ("XxO", False), ("X2", False),  # no chemical element (X: a still-masked atom)
])
def test_composition_validity_known_cases(formula, valid):
    assert metrics.composition_validity(formula) is valid


def test_composition_validity_pauling_test_matters():
    # NaSe balances only as Na(-1) Se(+1): the cation would be more electronegative than the anion
    assert metrics.composition_validity("NaSe", use_pauling_test=False)
    assert not metrics.composition_validity("NaSe")
    assert metrics.composition_validity("Na2Se")


def test_composition_validity_agrees_with_smact():
    from smact.screening import smact_validity

    rng = np.random.default_rng(0)
    pool = ["Li", "Na", "K", "Sr", "Ba", "Ti", "Zr", "Fe", "Co", "Ni", "Cu", "Zn", "Al", "Ga", "Sn",
            "Pb", "La", "O", "N", "F", "S", "Cl", "Se", "Bi", "Sb"]
    n_valid = 0
    for _ in range(150):
        els = rng.choice(pool, size=rng.integers(2, 4), replace=False)
        comp = Composition({e: int(rng.integers(1, 4)) for e in els})
        ours = metrics.composition_validity(comp)
        theirs = smact_validity(comp, oxidation_states_set="smact14")
        assert ours == theirs, comp
        n_valid += ours
    assert 20 < n_valid < 130  # the draws hold both valid and invalid compositions


def test_coverage_counts_nearest_neighbours_and_failed_fingerprints():
    ref_s = [np.array([0.0, 0.0]), np.array([1.0, 0.0])]
    ref_c = [np.array([0.0]), np.array([0.0])]
    gen_s = [np.array([0.05, 0.0]), np.array([5.0, 5.0]), None]
    gen_c = [np.array([1.0]), np.array([9.0]), np.array([0.0])]
    out = metrics.coverage(gen_s, gen_c, ref_s, ref_c, struc_cutoff=0.2, comp_cutoff=4.0)
    assert out["cov_recall"] == pytest.approx(0.5)       # only the first reference is covered
    assert out["cov_precision"] == pytest.approx(1 / 3)  # the failed one counts in the denominator
    # the composition cutoff matters too (as in CDVAE, the nearest structure and the nearest
    # composition are looked up independently)
    out = metrics.coverage(gen_s, gen_c, ref_s, ref_c, struc_cutoff=0.2, comp_cutoff=0.5)
    assert out["cov_recall"] == 0 and out["cov_precision"] == 0


def test_fingerprints_and_scaler_shapes():
    fp = metrics.structure_fingerprint(perovskite())
    assert fp.shape == (61,) and np.isfinite(fp).all()
    # the same structure, supercell and shifted: same fingerprint
    s2 = perovskite().make_supercell([2, 1, 1], in_place=False)
    s2.translate_sites(range(len(s2)), [0.1, 0.2, 0.3])
    np.testing.assert_allclose(metrics.structure_fingerprint(s2), fp, atol=1e-8)
    c = metrics.composition_fingerprint(Composition("SrTiO3"))
    assert c.shape == (132,)
    mean, std = metrics.cdvae_comp_scaler()
    assert mean.shape == std.shape == (132,) and (std > 0).all()
    scaled = metrics.scale_composition_fingerprints([c, np.full(132, np.nan)])
    np.testing.assert_allclose(scaled[0], (c - mean) / std)
    assert (scaled[1] == 0).all()


def test_generation_metrics_perfect_copy_scores_full_coverage_and_zero_distance(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(tmp_path))  # the reference fingerprints' cache
    ref = [perovskite(), perovskite(4.0, ("Ba", "Zr", "O", "O", "O")), rocksalt()]
    bad = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0.0, 0, 0], [0.02, 0, 0]])
    out = metrics.generation_metrics(ref + [bad], ref, progress=False)
    assert out["struct_valid"] == pytest.approx(0.75) and out["comp_valid"] == 1.0
    assert out["cov_recall"] == 1.0
    assert out["cov_precision"] == pytest.approx(0.75)  # the overlapping pair matches no reference
    assert out["wdist_density"] == pytest.approx(0.0, abs=1e-12)
    assert out["wdist_num_elems"] == pytest.approx(0.0, abs=1e-12)
    assert out["wdist_nn_distance"] == pytest.approx(0.0, abs=1e-12)
    assert list(out["per_structure"]["struct_valid"]) == [True, True, True, False]
    assert set(out) - {"per_structure", "valid"} - {k for k in out if k.startswith(("amsd", "amcd"))} <= set(metrics.UNITS)


def test_generation_metrics_check_their_inputs_before_fingerprinting(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(tmp_path))

    def no_fingerprints(*args, **kw):
        raise AssertionError("fingerprinting started before the inputs were checked")

    monkeypatch.setattr(metrics, "structure_fingerprint", no_fingerprints)
    ref = [perovskite()]
    with pytest.raises(ValueError, match=r"unknown CDVAE dataset 'perov5': known names are .*carbon.*perov_5.*perovskite"):
        metrics.generation_metrics(ref, ref, "perov5", progress=False)
    with pytest.raises(ValueError, match="got 0 generated and 1 reference"):
        metrics.generation_metrics([], ref, progress=False)
    with pytest.raises(ValueError, match="got 1 generated and 0 reference"):
        metrics.generation_metrics(ref, [], progress=False)


@pytest.mark.parametrize("name,folder", [("perov_5", "perov_5"), ("perovskite", "perov_5"), ("carbon", "carbon_24"),
                                         ("Carbon_24", "carbon_24"), ("mp20", "mp_20"), ("mp_20", "mp_20")])
def test_cdvae_dataset_names_map_to_the_coverage_cutoffs(name, folder):
    assert metrics.cdvae_dataset(name) == folder
    assert metrics.COV_CUTOFFS[folder] == {"perov_5": (0.2, 4.0), "carbon_24": (0.2, 4.0), "mp_20": (0.4, 10.0)}[folder]


def test_nearest_neighbour_distances_are_periodic_bond_lengths():
    # rock salt, a = 5.64 Å: every atom's nearest neighbour is a/2 away
    np.testing.assert_allclose(metrics.nearest_neighbour_distances(rocksalt()), 2.82, atol=1e-9)
    # one atom in a cell: its nearest neighbour is its own image, the shortest lattice vector away
    np.testing.assert_allclose(metrics.nearest_neighbour_distances(Structure(Lattice.orthorhombic(2.5, 7, 9), ["Fe"], [[0, 0, 0]])), 2.5)
    # a 0.3 Å pair across the cell boundary, in a large cell (the search radius grows past 3 Å)
    close = Structure(Lattice.cubic(12.0), ["Na", "Cl"], [[0.01, 0, 0], [0.985, 0, 0]])
    np.testing.assert_allclose(metrics.nearest_neighbour_distances(close), 0.3, atol=1e-9)


def test_nn_distance_wasserstein_flags_squeezed_crystals():
    ref = [perovskite(), perovskite(4.2, ("Ba", "Zr", "O", "O", "O")), rocksalt()]
    assert metrics.nn_distance_wasserstein(ref, ref) == pytest.approx(0.0, abs=1e-12)
    squeezed = [s.copy() for s in ref]
    for s in squeezed:
        s.scale_lattice(s.volume * 0.6**3)  # every bond 40 % shorter
    mean_bond = np.mean(np.concatenate([metrics.nearest_neighbour_distances(s) for s in ref]))
    assert metrics.nn_distance_wasserstein(squeezed, ref) == pytest.approx(0.4 * mean_bond, rel=1e-6)
    assert metrics.nn_distance_wasserstein(squeezed, ref) > 0.7  # Å: far outside any rounding
    with pytest.raises(ValueError, match="got 0 and 3"):
        metrics.nn_distance_wasserstein([], ref)


_FINGERPRINT = metrics.structure_fingerprint


def fingerprint_and_pid(s):
    """The fingerprint and the id of the process that computed it (module level: worker processes get it by name)."""
    return _FINGERPRINT(s), os.getpid()


def test_parallel_fingerprints_equal_serial_ones(monkeypatch):
    monkeypatch.setattr(metrics, "STRUCTURES_PER_WORKER", 2)  # two processes for these eight
    structures = [perovskite(), rocksalt(), perovskite(4.1, ("Ba", "Zr", "O", "O", "O")),
                  Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])] * 2
    serial = metrics.structure_fingerprints(structures, workers=1, progress=False)
    monkeypatch.setattr(metrics, "structure_fingerprint", fingerprint_and_pid)
    with_pids = metrics.structure_fingerprints(structures, workers=2, progress=False)
    parallel, pids = [x for x, _ in with_pids], {p for _, p in with_pids}
    assert len(parallel) == len(structures) and os.getpid() not in pids  # computed by other processes
    for a, b in zip(serial, parallel):
        assert np.array_equal(a, b)
    assert not np.array_equal(serial[0], serial[1])  # the structures differ, so would misplaced results
    with pytest.raises(ValueError, match="workers must be a positive number"):
        metrics.structure_fingerprints(structures, workers=0)


def test_reference_fingerprints_are_cached_by_the_structures_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(tmp_path))
    ref = [perovskite(), rocksalt()]
    first = metrics.reference_fingerprints(ref, progress=False, workers=1)
    files = list((tmp_path / "cache" / "fingerprints").glob("*.npz"))
    assert len(files) == 1 and metrics.structures_sha256(ref) != files[0].stem  # keyed by versions too
    calls = []
    real = metrics.structure_fingerprint
    monkeypatch.setattr(metrics, "structure_fingerprint", lambda s: calls.append(s) or real(s))
    second = metrics.reference_fingerprints(ref, progress=False, workers=1)
    assert calls == []  # read from the cache
    for a, b in zip(first[0], second[0]):
        assert np.array_equal(a, b)
    assert np.array_equal(first[1], second[1])
    moved = [perovskite(3.95), rocksalt()]  # a changed input misses the cache
    metrics.reference_fingerprints(moved, progress=False, workers=1)
    assert len(calls) == 2 and len(list((tmp_path / "cache" / "fingerprints").glob("*.npz"))) == 2
    blocked = tmp_path / "file"
    blocked.write_text("")  # the build folder is a file: nothing can be cached, the results still come
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(blocked))
    with pytest.warns(UserWarning, match="not cached"):
        third = metrics.reference_fingerprints(ref, progress=False, workers=1)
    assert np.array_equal(third[1], first[1])
