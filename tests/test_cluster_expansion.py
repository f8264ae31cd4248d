"""The lesson-02 data loader and the cluster-expansion helpers (icet + mchammer)."""

import numpy as np
import pytest
from ase.build import bulk

from mlcourse import data, lattice


@pytest.fixture(scope="module")
def cuau():
    return data.load_cuau()


@pytest.fixture(scope="module")
def pair_ce(cuau):
    ce, cve = lattice.fit_cluster_expansion(cuau.atoms, cuau.mixing_energy, bulk("Cu", "fcc", a=3.8), [5.0], "least-squares")
    return ce


def test_load_cuau(cuau):
    assert len(cuau) == 631
    assert set(np.concatenate([a.get_chemical_symbols() for a in cuau.atoms])) == {"Cu", "Au"}
    pure = cuau[cuau.concentration.isin([0.0, 1.0])]
    assert len(pure) == 2 and np.allclose(pure.mixing_energy, 0.0)
    assert cuau.mixing_energy.min() < -0.009  # Cu3Au-like structures order below zero


def test_load_cuau_rejects_a_nan_energy(tmp_path, fake_fetch):
    from ase.db import connect

    bad = tmp_path / "bad.db"
    with connect(bad) as db:
        for symbol, e in [("Cu", 0.0), ("Au", float("nan"))]:
            a = bulk(symbol, "fcc", a=3.8)
            db.write(a, mixing_energy=e, concentration=float(symbol == "Au"),
                     data={"relaxed_cell": a.cell.array, "relaxed_positions": a.positions})
    fake_fetch(bad)
    with pytest.raises(ValueError, match="NaN"):
        data.load_cuau()


def test_pair_model_rewrites_a_pairs_only_expansion_exactly(pair_ce):
    sup = bulk("Cu", "fcc", a=3.8, cubic=True).repeat(3)
    n_shells = len(pair_ce.get_cluster_space_copy()) - 2
    shells = lattice.neighbor_shells(sup.positions, sup.cell.array, n_shells)
    e0, h, J, residual = lattice.pair_model_from_ce(pair_ce, sup, shells, plus="Au")
    assert residual < 1e-10 and len(J) == n_shells
    s = sup.copy()
    sigma = np.where(np.arange(len(s)) % 3 == 0, 1.0, -1.0)
    s.symbols = ["Au" if v > 0 else "Cu" for v in sigma]
    assert e0 + h * sigma.mean() + lattice.pair_energy(sigma, shells, J) == pytest.approx(pair_ce.predict(s), abs=1e-10)


def test_teaching_mc_and_mchammer_agree_on_the_same_hamiltonian(pair_ce):
    sup = bulk("Cu", "fcc", a=3.8, cubic=True).repeat(3)
    shells = lattice.neighbor_shells(sup.positions, sup.cell.array, len(pair_ce.get_cluster_space_copy()) - 2)
    e0, h, J, _ = lattice.pair_model_from_ce(pair_ce, sup, shells, plus="Au")
    sigma = np.where(np.arange(len(sup)) % 4 == 0, 1.0, -1.0)
    start = sup.copy()
    start.symbols = ["Au" if v > 0 else "Cu" for v in sigma]
    T = 1200.0
    e, final = lattice.canonical_swap_mc(sigma, shells, J, lattice.K_B * T, 600, seed=1)
    ours, err = e0 + h * sigma.mean() + e[100:].mean(), lattice.block_error(e[100:])
    ref, structure = lattice.canonical_scan(pair_ce, start, [T], 600, seed=2)
    assert structure.get_chemical_symbols().count("Au") == 27  # canonical: composition kept
    assert abs(ours - ref.energy[0]) < 4 * np.hypot(err, ref.energy_err[0]), (ours, ref.energy[0])


def test_sgc_scan_moves_composition_with_the_chemical_potential(pair_ce):
    sup = bulk("Cu", "fcc", a=3.8, cubic=True).repeat(3)
    sgc = lattice.sgc_scan(pair_ce, sup, 600.0, [-0.3, 0.3], 20)
    assert sgc.concentration.iloc[0] < 0.05 and sgc.concentration.iloc[1] > 0.95
    assert sgc.mixing_energy.abs().max() < 0.02  # nearly pure ends: mixing energy near zero


def test_warren_cowley_limits():
    sup = bulk("Cu", "fcc", a=3.8, cubic=True).repeat(3)
    shell = lattice.neighbor_shells(sup.positions, sup.cell.array, 1)[0]
    l12 = np.zeros(len(sup), bool)
    l12[::4] = True  # one of the four simple-cubic sublattices of the conventional cell: L1_2
    assert lattice.warren_cowley(l12, shell) == pytest.approx(-1 / 3)
    assert abs(lattice.warren_cowley(np.random.default_rng(0).random(len(sup)) < 0.25, shell)) < 0.2


def test_relaxation_distortion_flags_structures_that_left_the_lattice(cuau):
    prim = bulk("Cu", "fcc", a=3.8)
    pure_cu = cuau.relaxed[cuau.concentration == 0.0].iloc[0]
    drmax, strained = lattice.relaxation_distortion(pure_cu, prim)
    assert drmax < 1e-6 and not strained  # only a uniform volume change
    tetragonal = bulk("Cu", "fcc", a=3.8, cubic=True)
    tetragonal.set_cell(tetragonal.cell.array * [1.0, 1.0, 0.8], scale_atoms=True)
    assert lattice.relaxation_distortion(tetragonal, prim)[1]
