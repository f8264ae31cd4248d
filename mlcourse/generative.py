"""Lesson 08 family: a small denoising diffusion model for periodic crystals.

The model (:class:`CrystalDiffusion`) diffuses the three parts of a crystal jointly, with one
time step t = 1 ... T for all of them:

- **fractional coordinates** with *wrapped* Gaussian noise (variance exploding, as in DiffCSP,
  Jiao et al. 2023): ``x_t = (x_0 + sigma_t * eps) mod 1``; the network learns the score of the
  wrapped normal, and sampling starts from the uniform distribution on the torus;
- **lattice parameters** (a, b, c in Å as logarithms, alpha, beta, gamma in degrees), standardised
  over the training set, with ordinary DDPM noise (Ho et al. 2020);
- **atom types** with discrete *absorbing-state* diffusion (D3PM, Austin et al. 2021): at step t
  each atom's type is hidden behind a MASK token with probability 1 - alpha_bar_t; the network
  predicts the clean type (logits, cross-entropy), and sampling unmasks atoms a few at a time.

The denoiser (:class:`PeriodicDenoiser`) is a message-passing network over all atom pairs of
a cell. An edge sees the fractional offset of its two atoms only through ``sin``/``cos`` of
``2 pi k . (x_j - x_i)`` for small integer wave vectors k and through the distances (Å) to every
periodic image within a cutoff, so it is invariant to permutations, to translations and to
periodic images, and (because fractional coordinates, lattice parameters and distances do not
change when the crystal is rotated) to rotations. Cells may have any number of atoms. A model
built with a property is conditioned on it, with classifier-free guidance at sampling.

The pieces, in the order a crystal meets them: conversion (:func:`lattice_features`,
:meth:`CrystalDiffusion.to_batch`, :meth:`CrystalDiffusion.to_structures`), the forward noise
(:meth:`CrystalDiffusion.noise`), the denoiser, and the reverse step
(:meth:`CrystalDiffusion.reverse_step`), which :meth:`CrystalDiffusion.sample` and
:meth:`CrystalDiffusion.trajectory` repeat from t = T down to 1. CDVAE's evaluation of the
generated crystals is in :mod:`mlcourse.metrics`.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import training
from .lesson import torch_seeded

# ----------------------------------------------------------------------- periodic (wrapped) noise


def wrap(frac: torch.Tensor | np.ndarray):
    """Fractional coordinates folded into [0, 1)."""
    return frac % 1.0


def wrapped_normal_score(d: torch.Tensor, sigma: torch.Tensor | float, n_images: int = 5) -> torch.Tensor:
    """Score d/dd log p(d) of the wrapped normal: a N(0, sigma^2) folded onto the unit circle.

    ``d`` is a (wrapped) fractional displacement (dimensionless), ``sigma`` its width in
    fractional units, broadcastable to ``d``. Sums the Gaussians of the images d + k for
    |k| <= n_images; the result is periodic in d with period 1.
    """
    sigma = torch.as_tensor(sigma, dtype=d.dtype)
    d = d - torch.floor(d + 0.5)  # the nearest image, in [-0.5, 0.5)
    k = torch.arange(-n_images, n_images + 1, dtype=d.dtype)
    dk = d.unsqueeze(-1) + k  # (..., 2K+1)
    logw = -(dk**2) / (2 * sigma.unsqueeze(-1) ** 2)
    w = torch.softmax(logw, dim=-1)
    return -(w * dk).sum(-1) / sigma**2


def add_wrapped_noise(frac: torch.Tensor, sigma: torch.Tensor | float, generator: torch.Generator | None = None):
    """``((frac + sigma * eps) mod 1, eps)`` with eps ~ N(0, 1): periodic noise on the torus."""
    eps = torch.randn(frac.shape, generator=generator, dtype=frac.dtype)
    return wrap(frac + torch.as_tensor(sigma, dtype=frac.dtype) * eps), eps


# ------------------------------------------------------------------------------ crystal <-> tensors


def lattice_features(structures: Sequence) -> np.ndarray:
    """(n, 6) array: ln a, ln b, ln c (a, b, c in Å) and alpha, beta, gamma (degrees)."""
    out = np.empty((len(structures), 6))
    for i, s in enumerate(structures):
        a, b, c = s.lattice.abc
        out[i] = (math.log(a), math.log(b), math.log(c), *s.lattice.angles)
    return out


def features_to_lattice(f: np.ndarray):
    """Inverse of :func:`lattice_features` for one row: a pymatgen Lattice (may be degenerate)."""
    from pymatgen.core import Lattice

    a, b, c = np.exp(np.clip(f[:3], -5, 5))
    alpha, beta, gamma = np.clip(f[3:], 1.0, 179.0)
    return Lattice.from_parameters(a, b, c, alpha, beta, gamma)


@dataclass
class CrystalBatch:
    """Several crystals as flat tensors: ``frac`` (N, 3), ``types`` (N,) indices into the model's
    element list, ``lattice`` (B, 6) standardised lattice features, ``batch`` (N,) crystal index,
    ``masked`` (N,) True where an atom's type is hidden behind the MASK token (its ``types`` entry
    then means nothing), ``prop`` (B,) the standardised target property of a conditional model (NaN:
    none; None for a model without one)."""

    frac: torch.Tensor
    types: torch.Tensor
    lattice: torch.Tensor
    batch: torch.Tensor
    masked: torch.Tensor
    prop: torch.Tensor | None = None

    @property
    def num_atoms(self) -> torch.Tensor:
        return torch.bincount(self.batch, minlength=self.lattice.shape[0])


def pair_index(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered atom pairs (i, j) inside each crystal, self pairs included (so a one-atom cell
    still has an edge). ``batch`` must be sorted (atoms of one crystal are contiguous)."""
    counts = torch.bincount(batch).tolist()
    src, dst, start = [], [], 0
    for n in counts:
        idx = torch.arange(start, start + n)
        src.append(idx.repeat_interleave(n))
        dst.append(idx.repeat(n))
        start += n
    return torch.cat(src), torch.cat(dst)


# ------------------------------------------------------------------------------------ the network


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_out))


MAX_IMAGES = 3  # periodic images of a neighbour each way along a lattice vector, at most
NEIGHBOURS = 8.0  # a typical number of neighbours within the cutoff: the scale of the summed messages


class PeriodicDenoiser(nn.Module):
    """Message passing over all atom pairs of each cell, with periodic edge features and a local,
    image-summed part within a cutoff.

    Inputs: one-hot types with a last MASK channel (N, n_types + 1), noisy fractional coordinates (N, 3),
    noisy standardised lattice features (B, 6), time t in [0, 1] per crystal (B,), the crystal index of
    each atom (N,), the lattice vectors (B, 3, 3; Å, rows) and, for a ``conditional`` network, the
    standardised target property per crystal (B,; NaN: none, the learned null token). Outputs:
    fractional coordinate score times sigma (N, 3), lattice noise estimate (B, 6), clean-type logits
    (N, n_types).

    Two kinds of edge see each pair (i, j): a global one, with sin/cos of 2 pi k . (x_j - x_i) for the
    integer wave vectors k with components in {-1, 0, 1} and k = 2 ... 4 along each axis (any distance;
    messages averaged over the cell's atoms), and a local one that sums over *every*
    periodic image of j within ``cutoff`` Å of i (radial basis functions times a smooth envelope;
    messages and coordinate pulls summed, not averaged, so one close neighbour pushes as hard in a
    16-atom cell as in a 2-atom one). Every atom and the lattice head also see the atom count N, as ln N
    and (``count_features`` > 0) as :meth:`count_embedding`.
    """

    def __init__(self, n_types: int, hidden: int = 64, n_layers: int = 3, k_max: int = 1, n_rbf: int = 12,
                 cutoff: float = 5.0, conditional: bool = False, count_features: int = 16):
        super().__init__()
        if count_features < 0 or count_features % 2:
            raise ValueError(f"count_features must be an even number >= 0, not {count_features!r}")
        self.cutoff, self.conditional, self.count_features = cutoff, conditional, count_features
        # integer wave vectors k with |k_i| <= k_max, one of each pair +-k: the plane waves of the cell
        grid = torch.cartesian_prod(*[torch.arange(-k_max, k_max + 1, dtype=torch.float32)] * 3)
        first = grid[torch.arange(len(grid)), (grid != 0).float().argmax(1)]  # first non-zero component
        harmonics = torch.arange(k_max + 1, 5, dtype=torch.float32)  # and up to 4 along each axis
        axes = torch.eye(3).repeat_interleave(len(harmonics), 0) * harmonics.repeat(3)[:, None]
        self.register_buffer("wavevectors", torch.cat([grid[first > 0], axes]))  # (K, 3)
        n_k = len(self.wavevectors)
        self.register_buffer("rbf_centres", torch.linspace(0.0, cutoff, n_rbf))  # Å
        n_prop = 16 if conditional else 0
        if conditional:
            self.prop_embed = _mlp(1, 16, 16)
            self.null_prop = nn.Parameter(torch.zeros(16))  # "no target": classifier-free guidance
        n_glob = 6 + 16 + 1 + count_features + n_prop  # lattice, time, ln N, atom count, property
        self.embed = nn.Linear(n_types + 1 + n_glob, hidden)
        n_edge = 2 * hidden + 2 * n_k + 6 + n_rbf + 1
        self.messages = nn.ModuleList(_mlp(n_edge, hidden, hidden) for _ in range(n_layers))
        self.updates = nn.ModuleList(_mlp(3 * hidden, hidden, hidden) for _ in range(n_layers))
        self.coord_out = _mlp(n_edge, hidden, n_k + n_rbf)
        self.type_out = _mlp(hidden, hidden, n_types)
        self.lattice_out = _mlp(hidden + n_glob, hidden, 6)

    @staticmethod
    def time_embedding(t: torch.Tensor, dim: int = 16) -> torch.Tensor:
        freqs = torch.exp(torch.linspace(0, math.log(1000.0), dim // 2))
        return torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], dim=1)

    @staticmethod
    def count_embedding(n_atoms: torch.Tensor, dim: int) -> torch.Tensor:
        """(B, dim) sin and cos of 2 pi N / P for dim / 2 periods P from 2 to 64 atoms (geometric): the atom
        count N as features in which neighbouring counts differ. With ln N alone, a model trained on the
        diamond Si cells of 2-16 atoms of ``tests/test_generative.py`` gave its 6- and 8-atom samples
        median angles of 75 and 78 degrees, between the 60 of the 2-6-atom and the 90 of the 8- and
        16-atom cells (one smooth function of ln N through all the counts)."""
        periods = torch.exp(torch.linspace(math.log(2.0), math.log(64.0), dim // 2, dtype=n_atoms.dtype))
        phase = 2 * math.pi * n_atoms[:, None] / periods
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=1)

    def local_features(self, frac, batch, cell, src, dst) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sums over the periodic images of j within the cutoff of i, for each pair (i, j): of the
        smooth envelope (E, 1; about the number of images within the cutoff), of the radial basis
        functions times the envelope, (E, n_rbf), and of the same times the fractional offset over
        the distance (Å⁻¹), (E, n_rbf, 3), the directions of the coordinate pulls."""
        d = frac[dst] - frac[src]
        d = d - torch.round(d)  # the image closest in fractional terms, then all images around it
        # an image n is within the cutoff only if |d_k + n_k| <= cutoff / h_k, h_k being the spacing of
        # the lattice planes k (1 / the length of reciprocal vector k): this finds every one, also in
        # slanted cells; at most MAX_IMAGES each way (very thin noisy cells)
        cross = torch.stack([torch.linalg.cross(cell[:, (k + 1) % 3], cell[:, (k + 2) % 3]) for k in range(3)], 1)
        volume = torch.linalg.det(cell).abs()[:, None]  # Å³; 0 for a flat noisy cell
        spacing = volume / torch.linalg.norm(cross, dim=2).clamp(min=1e-12)  # (B, 3) Å
        reach = torch.floor(self.cutoff / spacing.clamp(min=1e-3) + 0.5).amax(0).clamp(max=MAX_IMAGES).long().tolist()
        shifts = torch.cartesian_prod(*(torch.arange(-m, m + 1, dtype=frac.dtype) for m in reach))  # (S, 3)
        crystal = batch[src]
        vec = torch.einsum("ej,ejk->ek", d, cell[crystal])[:, None, :] + (shifts @ cell)[crystal]  # (E, S, 3) Å
        r2 = (vec**2).sum(2)
        edge, image = torch.nonzero((r2 < self.cutoff**2) & (r2 > 1e-12), as_tuple=True)  # not the atom itself
        r, delta = r2[edge, image].sqrt(), d[edge] + shifts[image]  # (P,), (P, 3): the images within the cutoff
        env = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1)
        rbf = torch.exp(-((r[:, None] - self.rbf_centres) ** 2) / 0.5) * env[:, None]  # (P, R)
        # the fractional offset per Å of distance, times the cell's length scale V^(1/3): about unit size
        direction = delta * (volume[crystal[edge]] ** (1 / 3) / torch.sqrt(r**2 + 0.01)[:, None])  # (P, 3)
        E, R = len(src), len(self.rbf_centres)
        return (torch.zeros(E, 1).index_add_(0, edge, env[:, None]), torch.zeros(E, R).index_add_(0, edge, rbf),
                torch.zeros(E, R, 3).index_add_(0, edge, rbf[:, :, None] * direction[:, None, :]))

    def forward(self, types, frac, lattice, t, batch, cell, prop=None):
        """``cell`` (B, 3, 3): the (noisy) lattice vectors in Å as rows, for interatomic distances;
        ``prop`` (B,): the standardised target property (conditional networks only; NaN: no target)."""
        src, dst = pair_index(batch)
        n_atoms = torch.bincount(batch, minlength=lattice.shape[0]).to(frac.dtype)
        glob = [lattice, self.time_embedding(t), torch.log(n_atoms.clamp(min=1))[:, None]]
        if self.count_features:
            glob.append(self.count_embedding(n_atoms, self.count_features))
        if self.conditional:
            if prop is None:
                raise ValueError("this denoiser is conditioned on a property: give prop (NaN for none)")
            known = torch.isfinite(prop)
            emb = self.prop_embed(torch.where(known, prop, 0.0)[:, None])
            glob.append(torch.where(known[:, None], emb, self.null_prop))
        elif prop is not None:
            raise ValueError("this denoiser was built without a property (conditional=False): prop must be None")
        glob = torch.cat(glob, dim=1)
        h = self.embed(torch.cat([types, glob[batch]], dim=1))
        d = frac[dst] - frac[src]  # (E, 3): offset of j seen from i, any periodic image
        ang = 2 * math.pi * d @ self.wavevectors.T  # (E, K): the phases 2 pi k . d
        fourier = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)
        near, rbf, pull_dirs = self.local_features(frac, batch, cell, src, dst)
        is_self = (src == dst).to(frac.dtype)[:, None]
        edge_static = torch.cat([fourier, lattice[batch[src]], rbf, is_self], dim=1)
        per_atom = n_atoms[batch][:, None]
        for msg, upd in zip(self.messages, self.updates):
            m = msg(torch.cat([h[src], h[dst], edge_static], dim=1))
            mean = torch.zeros_like(h).index_add_(0, src, m) / per_atom  # the whole cell
            local = torch.zeros_like(h).index_add_(0, src, m * near) / NEIGHBOURS  # summed, within the cutoff
            h = h + upd(torch.cat([h, mean, local], dim=1))
        # coordinate score: each pair pulls or pushes along k sin(2 pi k . d) (periodic, odd in d), averaged
        # over the cell, and every image of j within the cutoff along its offset, with a learned
        # strength per distance (radial basis), summed
        w = self.coord_out(torch.cat([h[src], h[dst], edge_static], dim=1))
        n_k = len(self.wavevectors)
        wf, wr = w[:, :n_k], w[:, n_k:]
        pull = (wf * torch.sin(ang)) @ self.wavevectors / per_atom[src] + torch.einsum("er,erj->ej", wr, pull_dirs)
        score = torch.zeros_like(frac).index_add_(0, src, pull)
        pooled = torch.zeros(lattice.shape[0], h.shape[1]).index_add_(0, batch, h) / n_atoms.clamp(min=1)[:, None]
        lat_eps = self.lattice_out(torch.cat([pooled, glob], dim=1))
        return score, lat_eps, self.type_out(h)


# ----------------------------------------------------------------------------- diffusion schedules


@dataclass
class Schedule:
    """Noise levels for T steps: DDPM betas (cosine schedule, Nichol & Dhariwal 2021) for the lattice,
    whose alpha_bar_t is also the probability that an atom type is still unmasked at step t, and
    geometric sigmas (fractional units) for the wrapped coordinate noise."""

    T: int = 200
    sigma_min: float = 0.005
    sigma_max: float = 0.5

    def __post_init__(self):
        s = 0.008
        steps = torch.arange(self.T + 1, dtype=torch.float64) / self.T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = (f / f[0]).clamp(min=1e-5)
        self.betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999).float()  # beta_1..beta_T
        self.alpha_bar = torch.cumprod(1 - self.betas, 0)  # index t-1 -> alpha_bar_t
        self.sigmas = torch.exp(torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), self.T)).float()


# --------------------------------------------------------------------------------------- the model


@dataclass
class CrystalDiffusion:
    """A joint diffusion model over lattice, fractional coordinates and atom types.

    Build it with :meth:`from_structures` (it learns the element list, the lattice standardisation
    and the distribution of atom counts from the training structures), then :meth:`fit`,
    :meth:`sample` (or :meth:`trajectory`), :meth:`save`/:meth:`load`. ``p_composition`` is the fraction of training
    crystals whose atom types stay unmasked, so that the model also learns to generate a structure
    for a given composition. ``cutoff`` (Å): the denoiser's local radius; ``count_features``: the size of
    its atom-count features (:class:`PeriodicDenoiser`; 0: ln N only).

    A model built with ``properties`` (:meth:`from_structures`) is conditioned on that property
    (``property_name``, standardised with ``property_mean`` and ``property_std``, in the property's
    own unit) with classifier-free guidance (Ho & Salimans 2022): during training the property is
    replaced by a learned null token for a fraction ``p_uncond`` of the crystals, so that the same
    network models p(crystal | property) and p(crystal); :meth:`sample` with ``target`` and
    ``guidance`` mixes the two.
    """

    elements: list[str]
    lattice_mean: np.ndarray
    lattice_std: np.ndarray
    num_atoms_counts: dict[int, int]
    hidden: int = 64
    n_layers: int = 3
    T: int = 200
    seed: int = 0
    p_composition: float = 0.2
    cutoff: float = 5.0
    property_name: str | None = None
    property_mean: float | None = None
    property_std: float | None = None
    p_uncond: float = 0.1
    count_features: int = 16
    history: training.History = field(default_factory=training.History)

    def __post_init__(self):
        with torch_seeded(self.seed):  # the weights; torch's global random state stays as it was
            self.schedule = Schedule(T=self.T)
            self.net = PeriodicDenoiser(len(self.elements), self.hidden, self.n_layers, cutoff=self.cutoff,
                                        conditional=self.conditional, count_features=self.count_features)

    @property
    def conditional(self) -> bool:
        """Whether the model is conditioned on a property (built with ``properties``)."""
        return self.property_mean is not None

    # ---------------------------------------------------------------- conversion: structures <-> tensors
    @classmethod
    def from_structures(cls, structures: Sequence, properties: Sequence[float] | None = None,
                        property_name: str = "property", **kw) -> CrystalDiffusion:
        """A fresh model whose element list and lattice statistics come from ``structures``; with
        ``properties`` (one finite number per structure, named ``property_name`` with its unit), a
        model conditioned on that property, whose statistics it keeps too."""
        if len(structures) == 0:
            raise ValueError("need at least one training structure")
        from .data import check_ordered

        for i, s in enumerate(structures):
            check_ordered(s, i)
        if properties is not None:
            y = _check_properties(properties, len(structures))
            kw |= {"property_name": property_name, "property_mean": float(y.mean()),
                   "property_std": float(y.std()) if y.std() > 0 else 1.0}
        elements = [el.symbol for el in sorted({el for s in structures for el in s.composition.elements}, key=lambda e: e.Z)]
        lat = lattice_features(structures)
        std = lat.std(0)
        std[std < 1e-3] = 1.0  # e.g. all-cubic data: every angle is 90 degrees
        counts = Counter(len(s) for s in structures)
        return cls(elements, lat.mean(0), std, dict(sorted(counts.items())), **kw)

    def to_batch(self, structures: Sequence, properties: Sequence[float] | None = None) -> CrystalBatch:
        """Tensors of ``structures`` (and, for a conditional model, of their ``properties``, standardised;
        none given: NaN, no target); raises ValueError naming a structure with an unknown element or a
        disordered site."""
        from .data import check_ordered

        index = {e: i for i, e in enumerate(self.elements)}
        frac, types, batch = [], [], []
        for i, s in enumerate(structures):
            for site in check_ordered(s, i):
                sym = site.specie.symbol
                if sym not in index:
                    raise ValueError(f"structure {i} ({s.composition.reduced_formula}) has element {sym}, "
                                     f"which the model was not built with")
                types.append(index[sym])
            frac.append(np.asarray(s.frac_coords) % 1.0)
            batch += [i] * len(s)
        lat = (lattice_features(structures) - self.lattice_mean) / self.lattice_std
        return CrystalBatch(torch.tensor(np.concatenate(frac), dtype=torch.float32), torch.tensor(types),
                            torch.tensor(lat, dtype=torch.float32), torch.tensor(batch),
                            torch.zeros(len(types), dtype=torch.bool), self._prop(properties, len(structures)))

    def _prop(self, values: Sequence[float] | float | None, n: int) -> torch.Tensor | None:
        """(n,) standardised property values (NaN where none), None for a model without a property."""
        if not self.conditional:
            if values is not None:
                raise ValueError("this model was built without a property: build it with "
                                 "CrystalDiffusion.from_structures(structures, properties=...) to condition on one")
            return None
        if values is None:
            return torch.full((n,), float("nan"))
        y = _check_properties([values] * n if isinstance(values, numbers.Real) else values, n)
        return torch.tensor((y - self.property_mean) / self.property_std, dtype=torch.float32)

    def to_structures(self, b: CrystalBatch) -> list:
        """pymatgen Structures of a batch (lattice un-standardised, coordinates wrapped); atoms whose
        type is masked become the dummy species X."""
        from pymatgen.core import DummySpecies, Structure

        lat = b.lattice.numpy() * self.lattice_std + self.lattice_mean
        out = []
        for i in range(lat.shape[0]):
            m = (b.batch == i).numpy()
            hidden = b.masked[m].numpy()
            species = [DummySpecies("X") if h else self.elements[k] for k, h in zip(b.types[m].tolist(), hidden)]
            out.append(Structure(features_to_lattice(lat[i]), species, wrap(b.frac[m].numpy().astype(float))))
        return out

    def cell(self, lattice: torch.Tensor) -> torch.Tensor:
        """(B, 3, 3) lattice vectors (Å, rows) of standardised lattice features, with pymatgen's
        ``Lattice.from_parameters`` convention; lengths and angles are clamped as in
        :func:`features_to_lattice`."""
        f = lattice * torch.as_tensor(self.lattice_std, dtype=lattice.dtype) + torch.as_tensor(self.lattice_mean, dtype=lattice.dtype)
        a, b, c = torch.exp(f[:, :3].clamp(-5, 5)).unbind(1)
        al, be, ga = torch.deg2rad(f[:, 3:].clamp(1.0, 179.0)).unbind(1)
        val = ((torch.cos(al) * torch.cos(be) - torch.cos(ga)) / (torch.sin(al) * torch.sin(be))).clamp(-1, 1)
        gs = torch.arccos(val)
        zero = torch.zeros_like(a)
        va = torch.stack([a * torch.sin(be), zero, a * torch.cos(be)], 1)
        vb = torch.stack([-b * torch.sin(al) * torch.cos(gs), b * torch.sin(al) * torch.sin(gs), b * torch.cos(al)], 1)
        vc = torch.stack([zero, zero, c], 1)
        return torch.stack([va, vb, vc], 1)

    # ---------------------------------------------------------------- forward process
    def noise(self, b: CrystalBatch, t: torch.Tensor,
              generator: torch.Generator | None = None) -> tuple[CrystalBatch, torch.Tensor]:
        """The clean batch ``b`` noised to integer steps ``t`` (B,), 1 <= t <= T: (the noisy crystals,
        whose ``masked`` atoms have their type hidden, and the standard-normal lattice noise (B, 6))."""
        ab = self.schedule.alpha_bar[t - 1]  # (B,)
        sig = self.schedule.sigmas[t - 1]
        frac_t, _ = add_wrapped_noise(b.frac, sig[b.batch][:, None], generator)
        lat_eps = torch.randn(b.lattice.shape, generator=generator)
        lat_t = ab.sqrt()[:, None] * b.lattice + (1 - ab).sqrt()[:, None] * lat_eps
        masked = torch.rand(b.types.shape, generator=generator) > ab[b.batch]
        # for a fraction of the crystals the composition stays visible at every t: the same network
        # then also learns p(lattice, coordinates | composition), which composition inpainting uses
        keep = torch.rand(len(ab), generator=generator) < self.p_composition
        masked &= ~keep[b.batch]
        return CrystalBatch(frac_t, b.types, lat_t, b.batch, masked, b.prop), lat_eps

    # ---------------------------------------------------------------- the denoiser and its loss
    def type_input(self, types: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """One-hot types (N, K + 1), the last channel being MASK where ``masked``."""
        K = len(self.elements)
        idx = torch.where(masked, torch.full_like(types, K), types)
        return nn.functional.one_hot(idx, K + 1).float()

    def denoise(self, x: CrystalBatch, time: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The network on noisy crystals at ``time`` t / T (B,): (sigma times the coordinate score (N, 3),
        the lattice noise estimate (B, 6), the clean-type logits (N, n_types))."""
        return self.net(self.type_input(x.types, x.masked), x.frac, x.lattice, time, x.batch, self.cell(x.lattice),
                        x.prop)

    def loss(self, b: CrystalBatch, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Denoising loss of one batch at random steps: coordinate score + lattice noise + type CE."""
        B = b.lattice.shape[0]
        t = torch.randint(1, self.T + 1, (B,), generator=generator)
        noisy, lat_noise = self.noise(b, t, generator)
        if self.conditional:  # classifier-free guidance: the null token for a fraction p_uncond
            drop = torch.rand(B, generator=generator) < self.p_uncond
            noisy.prop = torch.where(drop, float("nan"), noisy.prop)
        sig = self.schedule.sigmas[t - 1][b.batch][:, None]
        target = wrapped_normal_score(wrap(noisy.frac - b.frac), sig) * sig  # sigma * score ~ -eps
        # a shift of the whole crystal is the same crystal: the crystal's mean score cannot be
        # predicted from relative positions, so it is taken out of the target
        mean = torch.zeros(B, 3).index_add_(0, b.batch, target) / b.num_atoms[:, None]
        target = target - mean[b.batch]
        score, lat_eps, logits = self.denoise(noisy, t.float() / self.T)
        parts = {
            "coord": ((score - target) ** 2).mean(),
            "lattice": ((lat_eps - lat_noise) ** 2).mean(),
            "types": nn.functional.cross_entropy(logits, b.types),  # on all atoms (masked or not)
        }
        return parts["coord"] + parts["lattice"] + parts["types"], {k: float(v.detach()) for k, v in parts.items()}

    # ---------------------------------------------------------------- training
    def fit(self, structures: Sequence, epochs: int = 10, batch_size: int = 64, lr: float = 2e-3,
            checkpoint: str | Path | None = None, progress: bool = True, properties: Sequence[float] | None = None):
        """Train on pymatgen ``structures`` (any atom counts; with their ``properties`` if the model is
        conditional, in the unit it was built with) with Adam, a one-cycle learning rate
        and gradients clipped to norm 1; returns self. ``history`` (a :class:`mlcourse.training.History`)
        gets the mean batch loss of each epoch. ``checkpoint``: a path for resumable training
        (:func:`mlcourse.training.train`); save the trained model with :meth:`save`."""
        if len(structures) == 0:
            raise ValueError("no training structures")
        if self.conditional and properties is None:
            raise ValueError(f"this model is conditioned on {self.property_name}: give fit(..., properties=...), "
                             f"one value per structure")
        gen = torch.Generator().manual_seed(self.seed)
        y = [None] * len(structures) if properties is None else _check_properties(properties, len(structures))
        data = [self.to_batch([s], None if v is None else [v]) for s, v in zip(structures, y)]  # validates all up front

        def batches():
            order = torch.randperm(len(data), generator=gen).tolist()
            return (_collate([data[i] for i in order[k:k + batch_size]]) for k in range(0, len(order), batch_size))

        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        n_steps = epochs * math.ceil(len(structures) / batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=n_steps, pct_start=0.1)
        # each batch weighs 1: the epoch's loss is the plain mean of its batch losses
        self.history = training.train(self.net, opt, batches, lambda b: (self.loss(b, gen)[0], 1), epochs,
                                      clip_grad=1.0, step_scheduler=sched, generator=gen, checkpoint=checkpoint,
                                      progress=progress)
        return self

    # ---------------------------------------------------------------- reverse process
    def guided(self, x: CrystalBatch, time: torch.Tensor, guidance: float = 0.0):
        """:meth:`denoise` with classifier-free guidance: (1 + w) times the outputs given the target
        ``x.prop`` minus w times those without (the null token), w = ``guidance`` (0: the conditional
        model alone; the type logits are mixed the same way)."""
        out = self.denoise(x, time)
        if guidance == 0:
            return out
        free = self.denoise(CrystalBatch(x.frac, x.types, x.lattice, x.batch, x.masked,
                                         torch.full_like(x.prop, float("nan"))), time)
        return tuple((1 + guidance) * c - guidance * u for c, u in zip(out, free))

    def reverse_step(self, x: CrystalBatch, t: int, generator: torch.Generator, temperature: float = 1.0,
                     corrector: float = 0.0, guidance: float = 0.0) -> CrystalBatch:
        """One denoising step of coordinates, lattice and types, from step ``t`` to t - 1 (T >= t >= 1).

        ``temperature`` (> 0) scales the type logits: below 1 the drawn types are more typical, above 1
        more diverse. ``corrector`` > 0 adds one Langevin step of the coordinates at the new noise
        level with step size ``corrector * sigma^2`` (predictor-corrector sampling, Song et al. 2021).
        ``guidance`` >= 0: classifier-free guidance towards ``x.prop`` (:meth:`guided`).
        """
        if not (isinstance(temperature, numbers.Real) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0 (1: the model's own type distribution), "
                             f"not {temperature!r}")
        if not (isinstance(corrector, numbers.Real) and math.isfinite(corrector) and corrector >= 0):
            raise ValueError(f"corrector must be a finite number >= 0 (0: no Langevin corrector), not {corrector!r}")
        if not (isinstance(guidance, numbers.Real) and math.isfinite(guidance) and guidance >= 0):
            raise ValueError(f"guidance must be a finite number >= 0 (0: the conditional model alone), not {guidance!r}")
        if guidance > 0 and (x.prop is None or not torch.isfinite(x.prop).all()):
            raise ValueError("guidance > 0 needs a target property for every crystal")
        s, N = self.schedule, len(x.types)
        ab, beta = s.alpha_bar[t - 1], s.betas[t - 1]
        ab_prev = s.alpha_bar[t - 2] if t > 1 else torch.tensor(1.0)
        score, lat_eps, logits = self.guided(x, torch.full((len(x.lattice),), t / self.T), guidance)
        # coordinates: one reverse step of the variance-exploding SDE, wrapped onto the torus
        sig = s.sigmas[t - 1]
        sig_prev = s.sigmas[t - 2] if t > 1 else torch.tensor(0.0)
        dvar = sig**2 - sig_prev**2
        frac = x.frac + dvar * score / sig
        if t > 1:
            frac = frac + dvar.sqrt() * torch.randn((N, 3), generator=generator)
        frac = wrap(frac)
        # lattice: DDPM ancestral step from the predicted noise
        lat0 = ((x.lattice - (1 - ab).sqrt() * lat_eps) / ab.sqrt()).clamp(-5, 5)
        lat = _ddpm_step(x.lattice, lat0, ab, ab_prev, beta, t, generator)
        # types: unmask each masked atom with probability (alpha_bar_{t-1} - alpha_bar_t) / (1 - alpha_bar_t)
        # (all of them at the last step), drawing its type from the predicted distribution
        p_unmask = 1.0 if t == 1 else float((ab_prev - ab) / (1 - ab))
        reveal = x.masked & (torch.rand(N, generator=generator) < p_unmask)
        types, masked = x.types, x.masked
        if reveal.any():
            draw = torch.multinomial(torch.softmax(logits[reveal] / temperature, -1), 1, generator=generator)[:, 0]
            types = types.clone()
            types[reveal] = draw
            masked = masked & ~reveal
        out = CrystalBatch(frac, types, lat, x.batch, masked, x.prop)
        if corrector > 0 and t > 1:  # Langevin corrector at the new noise level sigma_{t-1}
            score, _, _ = self.guided(out, torch.full((len(x.lattice),), (t - 1) / self.T), guidance)
            out.frac = wrap(out.frac + corrector * sig_prev * score
                            + math.sqrt(2 * corrector) * sig_prev * torch.randn((N, 3), generator=generator))
        return out

    def start(self, num_atoms: Sequence[int], generator: torch.Generator,
              types: torch.Tensor | None = None, target: Sequence[float] | float | None = None) -> CrystalBatch:
        """Crystals at t = T: uniform coordinates, standard-normal lattice features and every type
        masked, or the given ``types`` (N,) kept visible (composition inpainting); ``target``: the
        property of each crystal (or one for all) for a conditional model, in its unit."""
        if len(num_atoms) == 0:
            raise ValueError("no crystals to start: num_atoms (or compositions) is empty; give at least one")
        if min(num_atoms) < 1:
            raise ValueError(f"every crystal needs at least one atom, got {list(num_atoms)}")
        B, N = len(num_atoms), sum(num_atoms)
        prop = self._prop(target, B)
        batch = torch.repeat_interleave(torch.arange(B), torch.tensor(num_atoms))
        frac = torch.rand((N, 3), generator=generator)
        lat = torch.randn((B, 6), generator=generator)
        if types is None:  # the current guess of a masked type means nothing
            return CrystalBatch(frac, torch.zeros(N, dtype=torch.long), lat, batch, torch.ones(N, dtype=torch.bool), prop)
        return CrystalBatch(frac, types.clone(), lat, batch, torch.zeros(N, dtype=torch.bool), prop)

    def composition_types(self, compositions: Sequence) -> list[list[int]]:
        """Per crystal, the type indices of its atoms, from pymatgen Compositions or formulas with
        integer amounts."""
        from pymatgen.core import Composition

        out = []
        for c in compositions:
            c = Composition(c)
            types = []
            for el, amt in c.items():
                if abs(amt - round(amt)) > 1e-6:
                    raise ValueError(f"composition {c} has a non-integer amount of {el}")
                if el.symbol not in self.elements:
                    raise ValueError(f"composition {c}: element {el.symbol} is not in the model")
                types += [self.elements.index(el.symbol)] * int(round(amt))
            out.append(types)
        return out

    @torch.no_grad()
    def _reverse(self, num_atoms: Sequence[int] | None, n: int | None, compositions: Sequence | None, seed: int,
                 temperature: float, corrector: float, progress: bool, target=None,
                 guidance: float = 0.0) -> Iterator[tuple[int, CrystalBatch]]:
        """(t, the crystals after the step from t to t - 1) for t = T ... 1, from seeded noise."""
        from tqdm.auto import tqdm

        gen = torch.Generator().manual_seed(seed)
        fixed = None
        if compositions is not None:
            types = self.composition_types(compositions)
            num_atoms = [len(k) for k in types]
            fixed = torch.tensor([k for crystal in types for k in crystal])
        elif num_atoms is None:
            if n is None:
                raise ValueError("give num_atoms, n or compositions")
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"n must be a positive number of crystals to sample, not {n!r}")
            sizes = np.array(list(self.num_atoms_counts))
            p = np.array(list(self.num_atoms_counts.values()), dtype=float)
            num_atoms = np.random.default_rng(seed).choice(sizes, size=n, p=p / p.sum()).tolist()
        if guidance != 0 and target is None:
            raise ValueError(f"guidance={guidance!r} needs a target: sample(..., target=..., guidance=...)")
        x = self.start([int(k) for k in num_atoms], gen, fixed, target)
        self.net.eval()
        for t in tqdm(range(self.T, 0, -1), desc="sampling", disable=not progress):
            x = self.reverse_step(x, t, gen, temperature, corrector, guidance)
            yield t, x

    def sample(self, num_atoms: Sequence[int] | None = None, n: int | None = None,
               compositions: Sequence | None = None, seed: int = 0, temperature: float = 1.0,
               corrector: float = 0.0, progress: bool = True, target: Sequence[float] | float | None = None,
               guidance: float = 0.0) -> list:
        """Generate crystals (pymatgen Structures) by running the reverse diffusion from noise.

        Give either ``num_atoms`` (atoms per crystal), ``n`` (that many crystals with atom counts
        drawn from the training distribution) or ``compositions`` (pymatgen Compositions or formulas
        with integer amounts: the atom types are fixed and only lattice and coordinates are
        generated — composition inpainting). ``temperature`` and ``corrector``: :meth:`reverse_step`.
        ``target``: for a conditional model, the property wanted (one value for all crystals or one
        per crystal, in the unit of the training values; None: unconditional), with classifier-free
        ``guidance`` w >= 0 (0: the conditional model alone; larger: pushed harder towards the target).
        """
        for _, x in self._reverse(num_atoms, n, compositions, seed, temperature, corrector, progress, target, guidance):
            pass  # x: the crystals after the last step
        return self.to_structures(x)

    def trajectory(self, every: int, num_atoms: Sequence[int] | None = None, n: int | None = None,
                   compositions: Sequence | None = None, seed: int = 0, temperature: float = 1.0,
                   corrector: float = 0.0, progress: bool = True, target: Sequence[float] | float | None = None,
                   guidance: float = 0.0) -> list[tuple[int, list]]:
        """The sampling of :meth:`sample` (same arguments, same draws) seen every ``every`` steps:
        (t, Structures after the step from t) at each t divisible by ``every`` and at t = 1, whose
        Structures are the samples. Atoms whose type is still masked appear as X, a dummy species."""
        return [(t, self.to_structures(x))
                for t, x in self._reverse(num_atoms, n, compositions, seed, temperature, corrector, progress,
                                          target, guidance)
                if t % every == 0 or t == 1]

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Weights and settings in one torch file (float16 weights to keep it small)."""
        path = Path(path)
        state = {k: v.half() if v.is_floating_point() else v for k, v in self.net.state_dict().items()}
        torch.save({"elements": self.elements, "lattice_mean": self.lattice_mean.tolist(),
                    "lattice_std": self.lattice_std.tolist(), "num_atoms_counts": self.num_atoms_counts,
                    "hidden": self.hidden, "n_layers": self.n_layers, "T": self.T, "seed": self.seed,
                    "p_composition": self.p_composition, "cutoff": self.cutoff, "property_name": self.property_name,
                    "property_mean": self.property_mean, "property_std": self.property_std,
                    "p_uncond": self.p_uncond, "count_features": self.count_features,
                    "history": asdict(self.history), "state": state}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CrystalDiffusion:
        """A model saved by :meth:`save`, with the network (cutoff, property conditioning, atom-count features)
        it was trained with."""
        d = torch.load(path, weights_only=True)
        for key, what in [("cutoff", "no local cutoff"), ("count_features", "no atom-count features setting")]:
            if key not in d:
                raise ValueError(f"{path} was saved by an older mlcourse whose denoiser had {what}; "
                                 f"retrain it (data/generative/train_perov5_checkpoint.py for the lesson's model)")
        h = d["history"]  # files saved before mlcourse.training hold the list of epoch losses
        history = (training.History(**h) if isinstance(h, dict)
                   else training.History(train_loss=list(h), best_epoch=len(h) - 1))
        m = cls(d["elements"], np.array(d["lattice_mean"]), np.array(d["lattice_std"]),
                {int(k): v for k, v in d["num_atoms_counts"].items()}, d["hidden"], d["n_layers"], d["T"],
                d["seed"], d["p_composition"], d["cutoff"], d["property_name"], d["property_mean"],
                d["property_std"], d["p_uncond"], d["count_features"], history)
        m.net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in d["state"].items()})
        m.net.eval()
        return m


def _ddpm_step(x_t, x0, ab, ab_prev, beta, t, gen):
    """Sample x_{t-1} from the DDPM posterior q(x_{t-1} | x_t, x0) (Ho et al. 2020, eq. 7)."""
    c0 = ab_prev.sqrt() * beta / (1 - ab)
    ct = (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)
    mean = c0 * x0 + ct * x_t
    if t == 1:
        return mean
    var = beta * (1 - ab_prev) / (1 - ab)
    return mean + var.sqrt() * torch.randn(x_t.shape, generator=gen)


def _collate(items: Sequence[CrystalBatch]) -> CrystalBatch:
    batch = torch.cat([torch.full((len(b.types),), i) for i, b in enumerate(items)])
    prop = None if items[0].prop is None else torch.cat([b.prop for b in items])
    return CrystalBatch(torch.cat([b.frac for b in items]), torch.cat([b.types for b in items]),
                        torch.cat([b.lattice for b in items]), batch, torch.cat([b.masked for b in items]), prop)


def _check_properties(values: Sequence[float], n: int) -> np.ndarray:
    """``values`` as a float array of length n; ValueError naming the first that is not a finite number."""
    if isinstance(values, (str, bytes)) or len(values) != n:
        raise ValueError(f"need one property value per crystal ({n}), got {values!r:.80}")
    y = np.empty(n)
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"property value {i} must be a finite number, not {v!r}")
        y[i] = float(v)
    return y
