"""Migration barriers (Em) of mobile ions: band descriptors, diffusivity and NEB (the published
metrics: :func:`mlcourse.metrics.barrier_metrics`).

A *band* (see :func:`mlcourse.data.load_migration_barriers`) is a host supercell with the mobile ion
at 5 points of a straight line from its initial to its final site: sites 0–4 are the ion, sites 5…
the host. The descriptors below read only that band — never the tabulated MACE columns.
"""

from __future__ import annotations

import numpy as np

from .data import N_IMAGES  # ion sites at the start of every band


def images(band) -> list:
    """The host with the ion at each of the band's ``N_IMAGES`` images, in order (structures; the ion is site 0)."""
    host = band.copy()
    host.remove_sites(range(1, N_IMAGES))  # keep image 0 as site 0
    frames = [host]
    for k in range(1, N_IMAGES):
        frame = host.copy()
        frame.replace(0, band[0].specie, band[k].coords, coords_are_cartesian=True)
        frames.append(frame)
    return frames


def endpoints(band):
    """(initial, final) structures of a band: the host with the ion at image 0 and at image 4."""
    frames = images(band)
    return frames[0], frames[-1]


def band_features(band, cutoff: float = 3.5) -> dict[str, float]:
    """Geometric descriptors of one band (lengths in Å, volumes in Å³).

    hop_length: straight-line length of the hop; d_min_k: distance from the ion at image k to the
    closest host atom (k = 0…4); bottleneck: the smallest of those; d_min_gain: how much closer the
    host comes at the bottleneck than at the end points; n_k: host atoms within ``cutoff`` of image k;
    volume_per_atom of the cell without the extra images; anion_distance_mid: the closest host atom
    that is more electronegative than the ion (a proxy for the anion cage at the saddle).
    """
    cart = np.array([band[i].coords for i in range(N_IMAGES)])
    host_idx = np.arange(N_IMAGES, len(band))
    ion_x = band[0].specie.X
    d, n = [], []
    for k in range(N_IMAGES):
        dist = band.lattice.get_all_distances(band.frac_coords[k:k + 1], band.frac_coords[host_idx])[0]
        d.append(dist.min())
        n.append(int((dist < cutoff).sum()))
        if k == N_IMAGES // 2:
            x = np.array([band[i].specie.X for i in host_idx])
            anion = dist[x > ion_x]
            anion_mid = anion.min() if len(anion) else np.nan
    feats = {"hop_length": float(np.linalg.norm(cart[-1] - cart[0])),
             **{f"d_min_{k}": float(d[k]) for k in range(N_IMAGES)},
             "bottleneck": float(min(d)), "d_min_gain": float(0.5 * (d[0] + d[-1]) - min(d)),
             **{f"n_{k}": float(n[k]) for k in range(N_IMAGES)},
             "volume_per_atom": band.volume / (len(band) - N_IMAGES + 1),
             "anion_distance_mid": float(anion_mid)}
    return feats


def material_composition(band):
    """Composition of the material: the host plus one mobile ion (pymatgen Composition)."""
    from collections import Counter

    from pymatgen.core import Composition

    return Composition(Counter(band[i].specie.symbol for i in range(N_IMAGES - 1, len(band))))


def arrhenius_diffusivity(Em, T: float = 300.0, hop_length: float = 3.0, nu: float = 1e13, dim: int = 3):
    """Random-walk diffusivity D = ν a² exp(−Em/k_B T) / (2·dim) in cm²/s (Em in eV, a in Å, ν in Hz).

    ValueError for T ≤ 0 K or NaN."""
    from .lattice import K_B, check_temperature

    return nu * (hop_length * 1e-8) ** 2 * np.exp(-np.asarray(Em, float) / (K_B * check_temperature(T, "T (K)"))) / (2 * dim)


def neb_barrier(initial, final, calc, n_images: int = 5, fmax: float = 0.1, steps: int = 200,
                relax_endpoints: bool = True, climb: bool = True) -> tuple[float, np.ndarray]:
    """Em (eV) by ASE's nudged elastic band (climbing image) between two ASE Atoms with ``calc``.

    End points are relaxed first (positions only, BFGS to ``fmax`` eV/Å) unless
    ``relax_endpoints`` is False; the band has ``n_images`` inner images, linearly interpolated
    (IDPP is an option in ASE when the straight line passes too close to an atom).
    NEB needs one cell: when the final cell differs (end points relaxed separately), the final
    atoms are placed in the initial cell at their fractional coordinates.
    Returns (Em = max image energy − initial energy, the energies along the band relative to the initial one).
    """
    from ase.mep import NEB
    from ase.optimize import BFGS, FIRE

    final = final.copy()
    if not np.allclose(final.cell.array, initial.cell.array):
        final.set_cell(initial.cell, scale_atoms=True)
    ends = []
    for atoms in (initial, final):
        a = atoms.copy()
        a.calc = calc
        if relax_endpoints:
            BFGS(a, logfile=None).run(fmax=fmax, steps=steps)
        ends.append(a)
    images = [ends[0]] + [ends[0].copy() for _ in range(n_images)] + [ends[1]]
    for im in images[1:-1]:
        im.calc = calc
    neb = NEB(images, climb=climb, allow_shared_calculator=True, method="improvedtangent")
    neb.interpolate(mic=True)
    FIRE(neb, logfile=None).run(fmax=fmax, steps=steps)
    energies = np.array([im.get_potential_energy() for im in images])
    profile = energies - energies[0]
    return float(profile.max()), profile
