"""Lesson 08 family: a small denoising diffusion model for periodic crystals, and CDVAE's metrics.

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
``2 pi k (x_j - x_i)`` and through the distance (Å) to the nearest periodic image, so it is
invariant to permutations, to translations and to periodic images, and (because fractional
coordinates, lattice parameters and distances do not change when the crystal is rotated) to
rotations. Cells may have any number of atoms.

The CDVAE evaluation protocol (Xie et al., ICLR 2022, scripts/compute_metrics.py and
eval_utils.py of github.com/txie-93/cdvae) is reimplemented in :func:`structure_validity`,
:func:`composition_validity`, :func:`coverage` and :func:`property_wasserstein`.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import training

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
    element list, ``lattice`` (B, 6) standardised lattice features, ``batch`` (N,) crystal index."""

    frac: torch.Tensor
    types: torch.Tensor
    lattice: torch.Tensor
    batch: torch.Tensor

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


class PeriodicDenoiser(nn.Module):
    """Message passing over all atom pairs of each cell, with periodic edge features.

    Inputs: one-hot types with a last MASK channel (N, n_types + 1), noisy fractional coordinates (N, 3), noisy
    standardised lattice features (B, 6), time t in [0, 1] per crystal (B,). Outputs: fractional
    coordinate score times sigma (N, 3), lattice noise estimate (B, 6), clean-type logits (N, n_types).
    """

    def __init__(self, n_types: int, hidden: int = 64, n_layers: int = 3, n_freq: int = 4, n_rbf: int = 12):
        super().__init__()
        self.n_freq = n_freq
        self.register_buffer("rbf_centres", torch.linspace(0.0, 6.0, n_rbf))  # Å
        self.embed = nn.Linear(n_types + 1 + 6 + 16, hidden)
        n_edge = 2 * hidden + 6 * n_freq + 6 + n_rbf + 1
        self.messages = nn.ModuleList(_mlp(n_edge, hidden, hidden) for _ in range(n_layers))
        self.updates = nn.ModuleList(_mlp(2 * hidden, hidden, hidden) for _ in range(n_layers))
        self.coord_out = _mlp(n_edge, hidden, 3 * n_freq)
        self.type_out = _mlp(hidden, hidden, n_types)
        self.lattice_out = _mlp(hidden + 6 + 16, hidden, 6)

    @staticmethod
    def time_embedding(t: torch.Tensor, dim: int = 16) -> torch.Tensor:
        freqs = torch.exp(torch.linspace(0, math.log(1000.0), dim // 2))
        return torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], dim=1)

    def forward(self, types, frac, lattice, t, batch, cell):
        """``cell`` (B, 3, 3): the (noisy) lattice vectors in Å as rows, for interatomic distances."""
        src, dst = pair_index(batch)
        temb = self.time_embedding(t)
        glob = torch.cat([lattice, temb], dim=1)  # (B, 22)
        h = self.embed(torch.cat([types, glob[batch]], dim=1))
        d = frac[dst] - frac[src]  # (E, 3): offset of j seen from i, any periodic image
        k = torch.arange(1, self.n_freq + 1, dtype=frac.dtype)
        ang = 2 * math.pi * d[:, :, None] * k  # (E, 3, F)
        fourier = torch.cat([torch.sin(ang).flatten(1), torch.cos(ang).flatten(1)], dim=1)
        # the distance (Å) to the nearest periodic image of j: invariant to rotations too
        dw = d - torch.round(d)
        dist = torch.linalg.norm(torch.einsum("ej,ejk->ek", dw, cell[batch[src]]), dim=1)
        rbf = torch.exp(-((dist[:, None] - self.rbf_centres) ** 2) / 0.5)
        is_self = (src == dst).to(frac.dtype)[:, None]
        edge_static = torch.cat([fourier, lattice[batch[src]], rbf, is_self], dim=1)
        n_atoms = torch.bincount(batch).to(frac.dtype)[batch][:, None]
        for msg, upd in zip(self.messages, self.updates):
            m = msg(torch.cat([h[src], h[dst], edge_static], dim=1))
            agg = torch.zeros_like(h).index_add_(0, src, m) / n_atoms
            h = h + upd(torch.cat([h, agg], dim=1))
        # coordinate score: each pair pulls or pushes along sin(2 pi k d), which is periodic and
        # odd in d, with learned weights per axis and harmonic k
        w = self.coord_out(torch.cat([h[src], h[dst], edge_static], dim=1)).view(-1, 3, self.n_freq)
        pull = (w * torch.sin(ang)).sum(-1)  # (E, 3)
        score = torch.zeros_like(frac).index_add_(0, src, pull) / n_atoms
        pooled = torch.zeros(lattice.shape[0], h.shape[1]).index_add_(0, batch, h)
        pooled = pooled / torch.bincount(batch, minlength=lattice.shape[0]).clamp(min=1)[:, None]
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
    :meth:`sample`, :meth:`save`/:meth:`load`. ``p_composition`` is the fraction of training
    crystals whose atom types stay unmasked, so that the model also learns to generate a structure
    for a given composition.
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
    history: training.History = field(default_factory=training.History)

    def __post_init__(self):
        torch.manual_seed(self.seed)
        self.schedule = Schedule(T=self.T)
        self.net = PeriodicDenoiser(len(self.elements), self.hidden, self.n_layers)

    # ---------------------------------------------------------------- data
    @classmethod
    def from_structures(cls, structures: Sequence, **kw) -> CrystalDiffusion:
        """A fresh model whose element list and lattice statistics come from ``structures``."""
        if len(structures) == 0:
            raise ValueError("need at least one training structure")
        from .data import check_ordered

        for i, s in enumerate(structures):
            check_ordered(s, i)
        elements = [el.symbol for el in sorted({el for s in structures for el in s.composition.elements}, key=lambda e: e.Z)]
        lat = lattice_features(structures)
        std = lat.std(0)
        std[std < 1e-3] = 1.0  # e.g. all-cubic data: every angle is 90 degrees
        counts = Counter(len(s) for s in structures)
        return cls(elements, lat.mean(0), std, dict(sorted(counts.items())), **kw)

    def to_batch(self, structures: Sequence) -> CrystalBatch:
        """Tensors of ``structures``; raises ValueError naming a structure with an unknown element or a disordered site."""
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
                            torch.tensor(lat, dtype=torch.float32), torch.tensor(batch))

    def to_structures(self, b: CrystalBatch, masked: torch.Tensor | None = None) -> list:
        """pymatgen Structures of a batch (lattice un-standardised, coordinates wrapped); atoms flagged
        in ``masked`` become the dummy species X."""
        from pymatgen.core import DummySpecies, Structure

        lat = b.lattice.numpy() * self.lattice_std + self.lattice_mean
        out = []
        for i in range(lat.shape[0]):
            m = (b.batch == i).numpy()
            hidden = np.zeros(int(m.sum()), bool) if masked is None else masked[m].numpy()
            species = [DummySpecies("X") if h else self.elements[k] for k, h in zip(b.types[m].tolist(), hidden)]
            out.append(Structure(features_to_lattice(lat[i]), species, wrap(b.frac[m].numpy().astype(float))))
        return out

    # ---------------------------------------------------------------- forward process
    def noise(self, b: CrystalBatch, t: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """Noisy versions of a batch at integer steps ``t`` (B,), 1 <= t <= T, and the noise used."""
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
        types_t = self.type_input(b.types, masked)
        return dict(frac=frac_t, lattice=lat_t, lat_eps=lat_eps, types=types_t, masked=masked, sigma=sig)

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

    def type_input(self, types: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """One-hot types (N, K + 1), the last channel being MASK where ``masked``."""
        K = len(self.elements)
        idx = torch.where(masked, torch.full_like(types, K), types)
        return nn.functional.one_hot(idx, K + 1).float()

    def loss(self, b: CrystalBatch, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Denoising loss of one batch at random steps: coordinate score + lattice noise + type CE."""
        B = b.lattice.shape[0]
        t = torch.randint(1, self.T + 1, (B,), generator=generator)
        n = self.noise(b, t, generator)
        sig = n["sigma"][b.batch][:, None]
        target = wrapped_normal_score(wrap(n["frac"] - b.frac), sig) * sig  # sigma * score ~ -eps
        # a shift of the whole crystal is the same crystal: the crystal's mean score cannot be
        # predicted from relative positions, so it is taken out of the target
        mean = torch.zeros(B, 3).index_add_(0, b.batch, target) / b.num_atoms[:, None]
        target = target - mean[b.batch]
        score, lat_eps, logits = self.net(n["types"], n["frac"], n["lattice"], t.float() / self.T, b.batch,
                                          self.cell(n["lattice"]))
        parts = {
            "coord": ((score - target) ** 2).mean(),
            "lattice": ((lat_eps - n["lat_eps"]) ** 2).mean(),
            "types": nn.functional.cross_entropy(logits, b.types),  # on all atoms (masked or not)
        }
        return parts["coord"] + parts["lattice"] + parts["types"], {k: float(v.detach()) for k, v in parts.items()}

    # ---------------------------------------------------------------- training
    def fit(self, structures: Sequence, epochs: int = 10, batch_size: int = 64, lr: float = 2e-3,
            checkpoint: str | Path | None = None, progress: bool = True):
        """Train on pymatgen ``structures`` (any atom counts) with Adam, a one-cycle learning rate
        and gradients clipped to norm 1; returns self. ``history`` (a :class:`mlcourse.training.History`)
        gets the mean batch loss of each epoch. ``checkpoint``: a path for resumable training
        (:func:`mlcourse.training.train`); save the trained model with :meth:`save`."""
        if len(structures) == 0:
            raise ValueError("no training structures")
        gen = torch.Generator().manual_seed(self.seed)
        data = [self.to_batch([s]) for s in structures]  # validates every structure up front

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

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, num_atoms: Sequence[int] | None = None, n: int | None = None,
               compositions: Sequence | None = None, seed: int = 0, keep_every: int = 0,
               temperature: float = 1.0, corrector: float = 0.0, progress: bool = True):
        """Generate crystals by running the reverse diffusion from noise.

        Give either ``num_atoms`` (atoms per crystal), ``n`` (that many crystals with atom counts
        drawn from the training distribution) or ``compositions`` (pymatgen Compositions or formulas
        with integer amounts: the atom types are fixed and only lattice and coordinates are
        generated — composition inpainting). Returns a list of Structures, and with
        ``keep_every > 0`` also the trajectory: a list of (t, structures) every that many steps
        (atoms whose type is still masked appear as X, a dummy species). ``temperature`` (> 0) scales
        the type logits: below 1 the drawn types are more typical, above 1 more diverse.
        ``corrector`` > 0 adds, after each step, one Langevin step of the coordinates at the new
        noise level with step size ``corrector * sigma^2`` (predictor-corrector sampling, Song et al. 2021).
        """
        from pymatgen.core import Composition
        from tqdm.auto import tqdm

        gen = torch.Generator().manual_seed(seed)
        fixed = None
        if compositions is not None:
            fixed_types = []
            for c in compositions:
                c = Composition(c)
                syms = []
                for el, amt in c.items():
                    if abs(amt - round(amt)) > 1e-6:
                        raise ValueError(f"composition {c} has a non-integer amount of {el}")
                    if el.symbol not in self.elements:
                        raise ValueError(f"composition {c}: element {el.symbol} is not in the model")
                    syms += [el.symbol] * int(round(amt))
                fixed_types.append([self.elements.index(s) for s in syms])
            num_atoms = [len(f) for f in fixed_types]
            fixed = torch.tensor([k for f in fixed_types for k in f])
        elif num_atoms is None:
            if n is None:
                raise ValueError("give num_atoms, n or compositions")
            sizes = np.array(list(self.num_atoms_counts))
            p = np.array(list(self.num_atoms_counts.values()), dtype=float)
            num_atoms = np.random.default_rng(seed).choice(sizes, size=n, p=p / p.sum()).tolist()
        num_atoms = [int(k) for k in num_atoms]
        if min(num_atoms) < 1:
            raise ValueError(f"every crystal needs at least one atom, got {num_atoms}")
        B, N, K = len(num_atoms), sum(num_atoms), len(self.elements)
        batch = torch.repeat_interleave(torch.arange(B), torch.tensor(num_atoms))
        frac = torch.rand((N, 3), generator=gen)
        lat = torch.randn((B, 6), generator=gen)
        types = torch.zeros(N, dtype=torch.long)  # current guess; meaningless while masked
        masked = torch.ones(N, dtype=torch.bool) if fixed is None else torch.zeros(N, dtype=torch.bool)
        if fixed is not None:  # inpainting: the known types are never masked
            types = fixed.clone()
        s, traj = self.schedule, []
        self.net.eval()
        for t in tqdm(range(self.T, 0, -1), desc="sampling", disable=not progress):
            ab, beta = s.alpha_bar[t - 1], s.betas[t - 1]
            ab_prev = s.alpha_bar[t - 2] if t > 1 else torch.tensor(1.0)
            tt = torch.full((B,), t / self.T)
            score, lat_eps, logits = self.net(self.type_input(types, masked), frac, lat, tt, batch, self.cell(lat))
            # coordinates: one reverse step of the variance-exploding SDE, wrapped onto the torus
            sig = s.sigmas[t - 1]
            sig_prev = s.sigmas[t - 2] if t > 1 else torch.tensor(0.0)
            dvar = sig**2 - sig_prev**2
            frac = frac + dvar * score / sig
            if t > 1:
                frac = frac + dvar.sqrt() * torch.randn((N, 3), generator=gen)
            frac = wrap(frac)
            # lattice: DDPM ancestral step from the predicted noise
            lat0 = ((lat - (1 - ab).sqrt() * lat_eps) / ab.sqrt()).clamp(-5, 5)
            lat = _ddpm_step(lat, lat0, ab, ab_prev, beta, t, gen)
            # types: unmask each masked atom with probability (alpha_bar_{t-1} - alpha_bar_t) / (1 - alpha_bar_t)
            # (all of them at the last step), drawing its type from the predicted distribution
            p_unmask = 1.0 if t == 1 else float((ab_prev - ab) / (1 - ab))
            reveal = masked & (torch.rand(N, generator=gen) < p_unmask)
            if reveal.any():
                draw = torch.multinomial(torch.softmax(logits[reveal] / temperature, -1), 1, generator=gen)[:, 0]
                types = types.clone()
                types[reveal] = draw
                masked = masked & ~reveal
            if corrector > 0 and t > 1:  # Langevin corrector at the new noise level sigma_{t-1}
                tt = torch.full((B,), (t - 1) / self.T)
                score, _, _ = self.net(self.type_input(types, masked), frac, lat, tt, batch, self.cell(lat))
                frac = wrap(frac + corrector * sig_prev * score
                            + math.sqrt(2 * corrector) * sig_prev * torch.randn((N, 3), generator=gen))
            if keep_every and (t % keep_every == 0 or t == 1):
                traj.append((t, self.to_structures(CrystalBatch(frac.clone(), types.clone(), lat.clone(), batch),
                                                   masked.clone())))
        out = self.to_structures(CrystalBatch(frac, types, lat, batch))
        return (out, traj) if keep_every else out

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Weights and settings in one torch file (float16 weights to keep it small)."""
        path = Path(path)
        state = {k: v.half() if v.is_floating_point() else v for k, v in self.net.state_dict().items()}
        torch.save({"elements": self.elements, "lattice_mean": self.lattice_mean.tolist(),
                    "lattice_std": self.lattice_std.tolist(), "num_atoms_counts": self.num_atoms_counts,
                    "hidden": self.hidden, "n_layers": self.n_layers, "T": self.T, "seed": self.seed,
                    "p_composition": self.p_composition, "history": asdict(self.history), "state": state}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CrystalDiffusion:
        d = torch.load(path, weights_only=True)
        h = d["history"]  # files saved before mlcourse.training hold the list of epoch losses
        history = (training.History(**h) if isinstance(h, dict)
                   else training.History(train_loss=list(h), best_epoch=len(h) - 1))
        m = cls(d["elements"], np.array(d["lattice_mean"]), np.array(d["lattice_std"]),
                {int(k): v for k, v in d["num_atoms_counts"].items()}, d["hidden"], d["n_layers"], d["T"],
                d["seed"], d["p_composition"], history)
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
    return CrystalBatch(torch.cat([b.frac for b in items]), torch.cat([b.types for b in items]),
                        torch.cat([b.lattice for b in items]), batch)


# --------------------------------------------------------------------------- CDVAE's evaluation
# Xie et al., ICLR 2022; protocol of github.com/txie-93/cdvae scripts/compute_metrics.py and
# scripts/eval_utils.py, reimplemented here (tests/test_generative.py checks it).

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


def evaluate(generated: Sequence, reference: Sequence, dataset: str = "perov_5", ref_fps: tuple | None = None,
             progress: bool = True) -> dict:
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
