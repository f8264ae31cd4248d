"""Lesson 02 family: lattice models, Metropolis Monte Carlo and rejection-free kinetic Monte Carlo.

Teaching versions, each short enough to read in one screen. The library versions they are checked
against are icet/mchammer (cluster expansions) and Onsager's exact solution (2D Ising).
Energies in eV (or in units of J for the Ising model), temperatures as k_B·T in the same unit.
"""

from __future__ import annotations

import numpy as np

K_B = 8.617333262e-5  # Boltzmann constant, eV/K
ONSAGER_TC = 2.0 / np.log(1.0 + np.sqrt(2.0))  # k_B·T_c/J of the 2D square-lattice Ising model, 2.269


# --------------------------------------------------------------------------- input checks


def check_temperature(T, name: str = "kT") -> np.ndarray:
    """``T`` (a number or an array) as floats; ValueError naming ``name`` unless every value is finite and > 0.

    Boltzmann factors exp(−ΔE/T) and rates exp(−Em/k_B T) need T > 0; at T = 0 they divide by zero.
    """
    values = np.asarray(T, dtype=float)
    if values.size == 0 or not (np.isfinite(values) & (values > 0)).all():
        raise ValueError(f"{name} must be a finite number > 0, got {T!r}; give a temperature above zero "
                         "(a ground state is the T → 0 limit, reached by cooling in steps)")
    return values


def check_side(L, even: bool = False) -> int:
    """The lattice side ``L`` as an int; ValueError unless it is an integer ≥ 2 (and even, if ``even``)."""
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 2 or (even and L % 2):
        need = "an even integer ≥ 2 (the checkerboard update needs two colours that alternate around the periodic lattice)" \
            if even else "an integer ≥ 2"
        raise ValueError(f"L must be {need}, got {L!r}")
    return int(L)


# --------------------------------------------------------------------------- 2D Ising model


def ising_energy(spins: np.ndarray, J: float = 1.0) -> float:
    """E = −J Σ_<ij> s_i s_j on a periodic square lattice, per site (units of J)."""
    bonds = spins * (np.roll(spins, 1, axis=0) + np.roll(spins, 1, axis=1))
    return float(-J * bonds.sum() / spins.size)


def ising_metropolis(L: int, kT: float, n_sweeps: int, J: float = 1.0, seed: int = 0,
                     spins: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Metropolis MC of the L×L periodic Ising model with checkerboard (vectorised) updates.

    Sites of one colour of the checkerboard do not interact, so all of them can be tried at once:
    flipping s_i changes the energy by ΔE = 2 J s_i h_i with h_i the sum of its 4 neighbours, and
    is accepted with probability min(1, exp(−ΔE/kT)). Returns (energy per site after each sweep,
    |magnetisation| per site after each sweep, final spins). ValueError for kT ≤ 0 or NaN, or an odd L
    (with odd L two neighbours across the periodic boundary have one colour and would flip together).
    """
    L = check_side(L, even=True)
    kT = float(check_temperature(kT, "kT"))
    if spins is not None and (np.shape(spins) != (L, L) or not np.isin(spins, (-1, 1)).all()):
        raise ValueError(f"spins must be an L×L = {L}×{L} array of ±1, got shape {np.shape(spins)}")
    rng = np.random.default_rng(seed)
    s = rng.choice([-1, 1], size=(L, L)) if spins is None else spins.copy()
    colour = np.indices((L, L)).sum(axis=0) % 2
    energies, mags = np.empty(n_sweeps), np.empty(n_sweeps)
    for sweep in range(n_sweeps):
        for c in (0, 1):
            h = np.roll(s, 1, 0) + np.roll(s, -1, 0) + np.roll(s, 1, 1) + np.roll(s, -1, 1)
            dE = 2.0 * J * s * h
            flip = (colour == c) & (rng.random((L, L)) < np.exp(-dE / kT))
            s[flip] *= -1
        energies[sweep] = ising_energy(s, J)
        mags[sweep] = abs(s.mean())
    return energies, mags, s


# --------------------------------------------------------------------------- pair lattice models


def neighbor_shells(positions: np.ndarray, cell: np.ndarray, n_shells: int, tol: float = 1e-3) -> list[np.ndarray]:
    """Neighbour index arrays of the first ``n_shells`` shells of a periodic lattice.

    Returns one (n_sites, z_s) integer array per shell, z_s being that shell's coordination.
    ``positions`` (n×3, Å) and ``cell`` (3×3, rows are lattice vectors, Å).
    """
    frac = positions @ np.linalg.inv(cell)
    d = frac[None, :, :] - frac[:, None, :]
    d -= np.round(d)  # minimum image; the supercell must be more than twice the largest shell radius
    dist = np.linalg.norm(d @ cell, axis=-1)
    radii = np.unique(np.round(dist[dist > tol] / tol) * tol)[:n_shells]
    shells = []
    for r in radii:
        mask = np.abs(dist - r) < 10 * tol
        z = mask.sum(axis=1)
        if not (z == z[0]).all():
            raise ValueError(f"shell at {r:.3f} Å has unequal coordination: supercell too small or not a lattice")
        shells.append(np.nonzero(mask)[1].reshape(len(positions), z[0]))
    return shells


def pair_energy(sigma: np.ndarray, shells: list[np.ndarray], J: np.ndarray) -> float:
    """Σ_s J_s Σ_<ij>∈s σ_i σ_j per site, for occupations σ = ±1 (each pair counted once)."""
    return float(sum(Js * (sigma[:, None] * sigma[nb]).sum() for Js, nb in zip(J, shells)) / (2 * len(sigma)))


def canonical_swap_mc(sigma: np.ndarray, shells: list[np.ndarray], J: np.ndarray, kT: float,
                      n_sweeps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Canonical Metropolis MC of a pair lattice model with swap moves (composition fixed).

    A trial swaps a random A site i with a random B site j. With local fields h_i = Σ_s J_s Σ σ_nb,
    swapping equals flipping both: ΔE = −2σ_i h_i − 2σ_j h_j + 4 J_ij σ_i σ_j, where the last term
    puts back the i–j bond that the two flips would otherwise count twice. One sweep is n_sites
    trials. Returns (energy per site after each sweep, final σ). ValueError for kT ≤ 0 or NaN.
    """
    kT = float(check_temperature(kT, "kT"))
    rng = np.random.default_rng(seed)
    s = sigma.astype(float).copy()
    n = len(s)
    J_between = {}  # (i, j) -> J of the shell they share, for neighbour swaps
    for Js, nb in zip(J, shells):
        for i in range(n):
            for j in nb[i]:
                J_between[(i, int(j))] = J_between.get((i, int(j)), 0.0) + Js
    field = lambda i: sum(Js * s[nb[i]].sum() for Js, nb in zip(J, shells))  # noqa: E731
    E = pair_energy(s, shells, J) * n
    energies = np.empty(n_sweeps)
    for sweep in range(n_sweeps):
        for _ in range(n):
            i, j = rng.integers(n, size=2)
            if s[i] == s[j]:
                continue
            dE = -2 * s[i] * field(i) - 2 * s[j] * field(j) + 4 * J_between.get((int(i), int(j)), 0.0) * s[i] * s[j]
            if dE <= 0 or rng.random() < np.exp(-dE / kT):
                s[i], s[j] = s[j], s[i]
                E += dE
        energies[sweep] = E / n
    return energies, s


# --------------------------------------------------------------------------- kinetic Monte Carlo


def kmc_lattice_gas(L: int, n_particles: int, Em: float, T: float, n_steps: int, nu: float = 1e13,
                    a: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rejection-free (BKL, n-fold way) kMC of particles hopping on an L×L periodic square lattice.

    Each hop to an empty nearest-neighbour site has rate Γ = ν·exp(−Em/k_B T) (ν in Hz, Em in eV,
    T in K); hops to occupied sites are blocked. Every step lists all allowed hops, picks one with
    probability proportional to its rate (here all rates are equal) and advances the clock by
    Δt = −ln(u)/R with R the total rate. Returns (times in s, mean squared displacement in a² units
    of ``a`` squared, averaged over particles) after each step. ValueError for T ≤ 0 K or NaN, L < 2.
    """
    L = check_side(L)
    T = float(check_temperature(T, "T (K)"))
    if not 0 < n_particles < L * L:
        raise ValueError(f"need 0 < n_particles < L² = {L * L}, got {n_particles}")
    rng = np.random.default_rng(seed)
    rate = nu * np.exp(-Em / (K_B * T))
    moves = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])
    sites = np.stack(np.unravel_index(rng.choice(L * L, n_particles, replace=False), (L, L)), axis=1)
    occupied = np.zeros((L, L), bool)
    occupied[sites[:, 0], sites[:, 1]] = True
    unwrapped = sites.astype(float)
    start = unwrapped.copy()
    t, times, msd = 0.0, np.empty(n_steps), np.empty(n_steps)
    for step in range(n_steps):
        targets = (sites[:, None, :] + moves[None, :, :]) % L  # (particle, direction, xy)
        allowed = ~occupied[targets[..., 0], targets[..., 1]]
        n_allowed = allowed.sum()
        p, d = np.argwhere(allowed)[rng.integers(n_allowed)]
        t += -np.log(rng.random()) / (n_allowed * rate)
        occupied[tuple(sites[p])] = False
        sites[p] = targets[p, d]
        occupied[tuple(sites[p])] = True
        unwrapped[p] += moves[d]
        times[step] = t
        msd[step] = ((unwrapped - start) ** 2).sum(axis=1).mean() * a**2
    return times, msd


def diffusivity(times: np.ndarray, msd: np.ndarray, dim: int = 2) -> float:
    """Tracer diffusivity D = slope(MSD vs t)/(2·dim) from a least-squares line through the origin."""
    return float((times @ msd) / (times @ times) / (2 * dim))


def arrhenius_fit(T: np.ndarray, D: np.ndarray) -> tuple[float, float]:
    """Fit D = D0·exp(−Em/k_B T); returns (Em in eV, D0 in the unit of D). ValueError for T ≤ 0 K."""
    slope, intercept = np.polyfit(1.0 / (K_B * check_temperature(T, "T (K)")), np.log(D), 1)
    return float(-slope), float(np.exp(intercept))


def peak_position(x: np.ndarray, y: np.ndarray) -> float:
    """x of the maximum of y, refined by a parabola through the highest point and its two neighbours."""
    k = int(np.clip(np.argmax(y), 1, len(y) - 2))
    a, b, _ = np.polyfit(x[k - 1 : k + 2], y[k - 1 : k + 2], 2)
    return float(-b / (2 * a)) if a < 0 else float(x[k])


# --------------------------------------------------------------------------- cluster expansion + mchammer


def warren_cowley(is_b: np.ndarray, shell: np.ndarray) -> float:
    """First-shell Warren–Cowley short-range order α = 1 − P(A next to B)/c_A.

    ``is_b`` marks the B sites (bool, one per site); ``shell`` is a neighbour array from
    :func:`neighbor_shells`. α = 0 for a random alloy, < 0 when unlike neighbours are preferred
    (ordering), > 0 when like neighbours are (clustering).
    """
    c_a = 1.0 - is_b.mean()
    if c_a in (0.0, 1.0):
        return 0.0
    p_a_next_to_b = (~is_b[shell[is_b]]).mean()
    return float(1.0 - p_a_next_to_b / c_a)


def canonical_scan(ce, structure, temperatures, n_sweeps: int, seed: int = 0, progress: bool = False):
    """mchammer canonical MC of cluster expansion ``ce`` at each temperature (K), in the order given.

    The configuration is carried from one temperature to the next, so increasing temperatures heat
    and decreasing ones cool. The first fifth of each run is discarded as equilibration. Returns a
    DataFrame: temperature (K), energy (eV/site) and its block standard error, heat_capacity
    (k_B/site), sro (first-shell Warren–Cowley α of the minority species, see :func:`warren_cowley`),
    acceptance ratio.
    """
    import pandas as pd
    from mchammer.calculators import ClusterExpansionCalculator
    from mchammer.ensembles import CanonicalEnsemble
    from tqdm.auto import tqdm

    check_temperature(temperatures, "temperatures (K)")
    structure = structure.copy()
    n = len(structure)
    shell = neighbor_shells(structure.positions, structure.cell.array, 1)[0]
    symbols = sorted(set(structure.get_chemical_symbols()))
    minority = min(symbols, key=structure.get_chemical_symbols().count)
    calc = ClusterExpansionCalculator(structure, ce)
    rows = []
    for k, T in enumerate(tqdm(temperatures, desc="canonical MC", disable=not progress)):
        mc = CanonicalEnsemble(structure=structure, calculator=calc, temperature=float(T),
                               random_seed=seed + k, ensemble_data_write_interval=n)
        mc.run(number_of_trial_steps=n_sweeps * n)
        dc = mc.data_container
        e = np.asarray(dc.get("potential"))[n_sweeps // 5:] / n
        structure = mc.structure.copy()
        is_minority = np.array(structure.get_chemical_symbols()) == minority
        rows.append({"temperature": float(T), "energy": e.mean(), "energy_err": block_error(e),
                     "heat_capacity": e.var() * n / (K_B * float(T)) ** 2,  # Var(E_total)/(k_B T)² per site
                     "sro": warren_cowley(is_minority, shell),
                     "acceptance": dc.get("acceptance_ratio")[-1] if "acceptance_ratio" in dc.data else np.nan})
    return pd.DataFrame(rows), structure


def sgc_scan(ce, structure, temperature: float, dmus, n_sweeps: int, species: tuple[str, str] = ("Cu", "Au"),
             seed: int = 0, progress: bool = False):
    """mchammer semi-grand canonical MC: composition and mixing energy against Δμ = μ_B − μ_A (eV).

    Returns a DataFrame: dmu (eV), concentration (fraction of ``species[1]``), mixing_energy (eV/site).
    """
    import pandas as pd
    from mchammer.calculators import ClusterExpansionCalculator
    from mchammer.ensembles import SemiGrandCanonicalEnsemble
    from tqdm.auto import tqdm

    check_temperature(temperature, "temperature (K)")
    structure = structure.copy()
    n = len(structure)
    calc = ClusterExpansionCalculator(structure, ce)
    rows = []
    for k, dmu in enumerate(tqdm(dmus, desc="SGC MC", disable=not progress)):
        mc = SemiGrandCanonicalEnsemble(structure=structure, calculator=calc, temperature=temperature,
                                        chemical_potentials={species[0]: 0.0, species[1]: float(dmu)},
                                        random_seed=seed + k, ensemble_data_write_interval=n)
        mc.run(number_of_trial_steps=n_sweeps * n)
        dc = mc.data_container
        keep = slice(n_sweeps // 5, None)
        c = np.asarray(dc.get(f"{species[1]}_count"))[keep] / n
        e = np.asarray(dc.get("potential"))[keep] / n
        rows.append({"dmu": float(dmu), "concentration": c.mean(), "mixing_energy": e.mean()})  # potential = E_CE
        structure = mc.structure.copy()
    return pd.DataFrame(rows)


def pair_model_from_ce(ce, structure, shells: list[np.ndarray], plus: str, n_samples: int = 30,
                       seed: int = 0) -> tuple[float, float, np.ndarray, float]:
    """Rewrite a pairs-only cluster expansion as E/N = E0 + h·⟨σ⟩ + Σ_s J_s·(pairs in shell s per site).

    σ = +1 on sites of species ``plus``, −1 on the other species. The coefficients are
    found by least squares over random decorations of ``structure`` (an ASE Atoms supercell);
    a pairs-only CE is exactly of this form, so the returned residual (eV/atom, max abs) is ~1e-12.
    Returns (E0, h, J per shell, residual), all in eV.
    """
    (minus,) = set(ce.get_cluster_space_copy().chemical_symbols[0]) - {plus}
    rng = np.random.default_rng(seed)
    X, y = [], []
    for _ in range(n_samples):
        s = structure.copy()
        sigma = np.where(rng.random(len(s)) < rng.uniform(0.1, 0.9), 1.0, -1.0)
        s.symbols = [plus if v > 0 else minus for v in sigma]
        per_shell = [(sigma[:, None] * sigma[nb]).sum() / (2 * len(s)) for nb in shells]
        X.append([1.0, sigma.mean(), *per_shell])
        y.append(ce.predict(s))
    coef, *_ = np.linalg.lstsq(np.array(X), np.array(y), rcond=None)
    residual = float(np.abs(np.array(X) @ coef - y).max())
    return float(coef[0]), float(coef[1]), coef[2:], residual


def relaxation_distortion(relaxed, primitive) -> tuple[float, bool]:
    """How far a relaxed structure moved off its ideal lattice (icet's ``map_structure_to_reference``).

    Returns (largest atomic displacement in Å, whether icet flags a high anisotropic strain).
    Structures that relaxed far away are poorly described by a lattice model; icet's documentation
    recommends leaving them out of the training set.
    """
    import logging

    from icet.tools import map_structure_to_reference

    logger = logging.getLogger("icet")
    level = logger.level
    logger.setLevel(logging.ERROR)  # icet logs a warning per strained structure; we return the flag
    try:
        _, info = map_structure_to_reference(relaxed, primitive)
    finally:
        logger.setLevel(level)
    return float(info["drmax"]), bool(info["warnings"])


def fit_cluster_expansion(structures, energies, primitive, cutoffs, fit_method: str = "lasso",
                          n_splits: int = 10, seed: int = 42):
    """Fit ECIs of an icet cluster expansion with k-fold cross-validation (trainstation).

    ``structures``: ASE Atoms on the ideal lattice; ``energies``: mixing energies (eV/atom);
    ``cutoffs``: icet cutoffs per cluster order (Å: pairs, triplets, ...). Returns
    (ClusterExpansion, CrossValidationEstimator); ``cve.rmse_validation`` is the CV RMSE (eV/atom).
    """
    from icet import ClusterExpansion, ClusterSpace, StructureContainer
    from trainstation import CrossValidationEstimator

    symbols = sorted(set(primitive.get_chemical_symbols()) | {s for a in structures for s in a.get_chemical_symbols()})
    cs = ClusterSpace(primitive, list(cutoffs), [symbols])
    sc = StructureContainer(cs)
    for atoms, e in zip(structures, energies):
        sc.add_structure(atoms, properties={"mixing_energy": float(e)})
    cve = CrossValidationEstimator(sc.get_fit_data(key="mixing_energy"), fit_method=fit_method,
                                   validation_method="k-fold", n_splits=n_splits, seed=seed)
    cve.validate()
    cve.train()
    return ClusterExpansion(cs, cve.parameters), cve


def block_error(x: np.ndarray, n_blocks: int = 10) -> float:
    """Standard error of the mean of a correlated MC series from ``n_blocks`` block averages."""
    blocks = np.array_split(np.asarray(x, float), n_blocks)
    return float(np.std([b.mean() for b in blocks], ddof=1) / np.sqrt(n_blocks))
