import itertools

import numpy as np
import pytest

from mlcourse import lattice


def _exact_ising_energy(L: int, kT: float) -> float:
    """<E>/site of the L×L periodic Ising model by enumerating all 2^(L²) states."""
    states = np.array(list(itertools.product([-1, 1], repeat=L * L)), dtype=np.int8).reshape(-1, L, L)
    bonds = states * (np.roll(states, 1, axis=1) + np.roll(states, 1, axis=2))
    E = -bonds.reshape(len(states), -1).sum(axis=1) / (L * L)
    w = np.exp(-(E - E.min()) * L * L / kT)
    return float((w * E).sum() / w.sum())


def test_onsager_constant():
    assert lattice.ONSAGER_TC == pytest.approx(2.269185, abs=1e-6)
    assert np.sinh(2 / lattice.ONSAGER_TC) == pytest.approx(1.0, rel=1e-12)  # Onsager: sinh(2J/kT_c) = 1


@pytest.mark.slow
def test_ising_metropolis_samples_the_boltzmann_distribution_of_a_tiny_lattice():
    """Detailed balance: on a 4×4 lattice the MC mean energy equals the exact enumerated average."""
    kT = 2.5
    exact = _exact_ising_energy(4, kT)
    e, _, _ = lattice.ising_metropolis(4, kT, 40000, seed=1)
    e = e[1000:]
    blocks = e.reshape(39, -1).mean(axis=1)  # block averages for an honest error bar
    err = blocks.std(ddof=1) / np.sqrt(len(blocks))
    assert abs(e.mean() - exact) < 4 * err + 1e-3, (e.mean(), exact, err)


def test_ising_limits():
    e, m, _ = lattice.ising_metropolis(16, 0.5, 50, spins=np.ones((16, 16), int))
    assert e[-1] == pytest.approx(-2.0) and m[-1] == pytest.approx(1.0)  # ordered ground state
    e, m, _ = lattice.ising_metropolis(32, 50.0, 200, seed=2)
    assert abs(e[50:].mean()) < 0.1 and m[50:].mean() < 0.1  # high T: disordered


def _square(L):
    pos = np.array([[i, j, 0.0] for i in range(L) for j in range(L)])
    return pos, np.diag([L, L, 10.0])


def test_neighbor_shells_fcc():
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
    shells = lattice.neighbor_shells(atoms.positions, atoms.cell.array, 3)
    assert [s.shape[1] for s in shells] == [12, 6, 24]


@pytest.mark.slow
def test_canonical_swap_mc_matches_exact_canonical_average_on_a_tiny_lattice():
    """4×4 square lattice, 8 A + 8 B: all 12,870 configurations enumerated exactly."""
    pos, cell = _square(4)
    shells = lattice.neighbor_shells(pos, cell, 2)
    J, kT = np.array([0.05, -0.02]), 0.04
    configs = []
    for ones in itertools.combinations(range(16), 8):
        s = -np.ones(16)
        s[list(ones)] = 1
        configs.append(lattice.pair_energy(s, shells, J))
    E = np.array(configs)
    w = np.exp(-(E - E.min()) * 16 / kT)
    exact = (w * E).sum() / w.sum()
    sigma = np.array([1, -1] * 8)
    e, final = lattice.canonical_swap_mc(sigma, shells, J, kT, 20000, seed=3)
    assert final.sum() == 0  # composition kept
    assert e[-1] == pytest.approx(lattice.pair_energy(final, shells, J))  # incremental ΔE is exact
    blocks = e[500:].reshape(39, -1).mean(axis=1)
    err = blocks.std(ddof=1) / np.sqrt(len(blocks))
    assert abs(e[500:].mean() - exact) < 4 * err + 1e-4, (e[500:].mean(), exact, err)


def test_kmc_single_particle_has_the_analytic_rate():
    """One particle, 4 open neighbours: total rate 4Γ, so the mean waiting time is 1/(4Γ)."""
    Em, T = 0.5, 600.0
    gamma = 1e13 * np.exp(-Em / (lattice.K_B * T))
    times, _ = lattice.kmc_lattice_gas(20, 1, Em, T, 40000, seed=4)
    assert times[-1] / len(times) == pytest.approx(1 / (4 * gamma), rel=0.02)


@pytest.mark.slow
def test_kmc_dilute_gas_diffuses_like_a_random_walk():
    Em, T = 0.4, 500.0
    gamma = 1e13 * np.exp(-Em / (lattice.K_B * T))
    times, msd = lattice.kmc_lattice_gas(200, 400, Em, T, 80000, seed=5)
    assert lattice.diffusivity(times, msd) == pytest.approx(gamma, rel=0.15)  # D = Γa² in 2D


def test_arrhenius_fit_recovers_a_known_barrier():
    T = np.array([300.0, 500.0, 800.0])
    D = 2e-3 * np.exp(-0.37 / (lattice.K_B * T))
    Em, D0 = lattice.arrhenius_fit(T, D)
    assert Em == pytest.approx(0.37) and D0 == pytest.approx(2e-3)


def test_kmc_rejects_a_full_or_empty_lattice():
    with pytest.raises(ValueError, match="n_particles"):
        lattice.kmc_lattice_gas(4, 16, 0.5, 300.0, 10)


def test_peak_position_refines_between_grid_points():
    x = np.linspace(0, 1, 11)
    assert lattice.peak_position(x, -((x - 0.537) ** 2)) == pytest.approx(0.537)
    assert lattice.peak_position(x, x) == pytest.approx(0.9)  # maximum at the edge: nearest interior point


@pytest.mark.parametrize("kT", [0.0, -1.0, float("nan"), float("inf")])
def test_metropolis_needs_a_finite_positive_temperature(kT):
    with pytest.raises(ValueError, match=r"kT must be a finite number > 0"):
        lattice.ising_metropolis(4, kT, 1)
    sigma = np.array([1.0, -1.0, 1.0, -1.0])
    shells = [np.array([[1, 3], [0, 2], [1, 3], [0, 2]])]
    with pytest.raises(ValueError, match=r"kT must be a finite number > 0"):
        lattice.canonical_swap_mc(sigma, shells, np.array([0.1]), kT, 1)


@pytest.mark.parametrize("L", [5, 1, 0, 4.0, True])
def test_ising_needs_an_even_side_for_the_checkerboard(L):
    with pytest.raises(ValueError, match=r"L must be an (even )?integer ≥ 2"):
        lattice.ising_metropolis(L, 2.0, 1)


def test_ising_start_spins_must_fit_the_lattice():
    with pytest.raises(ValueError, match=r"spins must be an L×L = 4×4 array of ±1"):
        lattice.ising_metropolis(4, 2.0, 1, spins=np.ones((4, 6), int))
    with pytest.raises(ValueError, match=r"spins must be"):
        lattice.ising_metropolis(4, 2.0, 1, spins=np.zeros((4, 4), int))


@pytest.mark.parametrize("T", [0.0, -300.0, float("nan")])
def test_kmc_and_arrhenius_fit_need_a_positive_temperature(T):
    with pytest.raises(ValueError, match=r"T \(K\) must be a finite number > 0"):
        lattice.kmc_lattice_gas(10, 5, 0.3, T, 10)
    with pytest.raises(ValueError, match=r"T \(K\) must be a finite number > 0"):
        lattice.arrhenius_fit(np.array([300.0, T]), np.array([1e-8, 1e-9]))


def test_kmc_needs_an_integer_side():
    with pytest.raises(ValueError, match=r"L must be an integer ≥ 2, got 10.5"):
        lattice.kmc_lattice_gas(10.5, 5, 0.3, 300.0, 10)
    times, msd = lattice.kmc_lattice_gas(5, 3, 0.3, 300.0, 10)  # odd sides are fine without a checkerboard
    assert times[0] > 0 and np.all(np.diff(times) > 0)
    assert msd[0] == pytest.approx(1 / 3)  # the first hop moves one of the 3 particles by one site
