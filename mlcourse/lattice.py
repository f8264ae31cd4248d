"""Lesson 02 family: lattice models, Metropolis Monte Carlo and rejection-free kinetic Monte Carlo.

Teaching versions, each short enough to read in one screen. The library versions they are checked
against are icet/mchammer (cluster expansions) and Onsager's exact solution (2D Ising).
Energies in eV (or in units of J for the Ising model), temperatures as k_B·T in the same unit.
"""

from __future__ import annotations

import numpy as np

K_B = 8.617333262e-5  # Boltzmann constant, eV/K
ONSAGER_TC = 2.0 / np.log(1.0 + np.sqrt(2.0))  # k_B·T_c/J of the 2D square-lattice Ising model, 2.269


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
    |magnetisation| per site after each sweep, final spins).
    """
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
    trials. Returns (energy per site after each sweep, final σ).
    """
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
    of ``a`` squared, averaged over particles) after each step.
    """
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
        p, d = np.argwhere(allowed)[rng.integers(allowed.sum())]
        t += -np.log(rng.random()) / (allowed.sum() * rate)
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
    """Fit D = D0·exp(−Em/k_B T); returns (Em in eV, D0 in the unit of D)."""
    slope, intercept = np.polyfit(1.0 / (K_B * np.asarray(T, float)), np.log(D), 1)
    return float(-slope), float(np.exp(intercept))


def peak_position(x: np.ndarray, y: np.ndarray) -> float:
    """x of the maximum of y, refined by a parabola through the highest point and its two neighbours."""
    k = int(np.clip(np.argmax(y), 1, len(y) - 2))
    a, b, _ = np.polyfit(x[k - 1 : k + 2], y[k - 1 : k + 2], 2)
    return float(-b / (2 * a)) if a < 0 else float(x[k])
