"""Machine-learned interatomic potentials: moment tensor potentials (MTP) with motep.

motep 0.2.0 ships no untrained MTP level files, so :func:`untrained_mtp` writes them; its
writer puts ``radial_coeffs`` before ``radial_funcs_count``, which its own reader rejects, so
:func:`repair_mtp` reorders a file that ``motep train`` wrote. :func:`train_mtp` trains on a
list of ASE Atoms (energy eV, forces eV/Å, stress eV/Å³ on their calculators, e.g. from
:func:`mlcourse.data.load_mlearn`) and returns motep's ASE calculator and the loss history.

Training data for other codes: ``ase.io.write("train.xyz", frames)`` already writes energy,
forces and stress to extended XYZ, so the course has no wrapper for it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import math
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from ase.calculators.calculator import all_changes
from ase.data import atomic_numbers
from motep.calculator import MTP
from motep.io.mlip.mtp import read_mtp, write_mtp
from motep.train.trainer import Trainer

# The moment-tensor basis of an MTP level (Shapeev, Multiscale Model. Simul. 14, 1153 (2016); mlip-2's
# untrained_mtps/NN.mtp, Novikov et al., Mach. Learn.: Sci. Technol. 2, 025002 (2021)). A moment
# M_{mu,nu} = sum_j f_mu(r_ij) r_ij^(x)nu has level 2 + 4 mu + nu; a basis function is a full contraction of
# at most 4 moments (no index contracted within one moment) whose levels add up to <= the MTP level. mlip-2
# evaluates it as a chain of pairwise contractions of symmetric tensors ("alpha_index_times": {i, j,
# multiplicity, k}: moment k += multiplicity * moment i * moment j). MTP_MAX_LEVEL: levels 6-12 are
# mlip-2's files character for character (levels 6-10 are tested), level 14 has the same basis functions as
# mlip-2's, partly in another order. From level 16 on mlip-2 also contracts two different tensors that both keep
# free indices, stored with separate index groups; this stores every intermediate as one symmetric tensor (an
# invariant basis only without such contractions), so it stops at 14.
MTP_MAX_LEVEL = 14


def _components(rank: int) -> list[tuple[int, int, int]]:
    """The independent components (powers of x, y, z) of a symmetric tensor, in mlip-2's order."""
    return [(a, b, rank - a - b) for a in range(rank, -1, -1) for b in range(rank - a, -1, -1)]


def _contraction_graphs(types: list[tuple[int, int]], level: int) -> list[tuple[tuple[int, ...], dict]]:
    """Every basis function of ``level`` as (moment types, sorted; edges {(a, b): contracted indices})."""
    def multisets(n, start, budget):
        if n == 0:
            yield ()
        for t in range(start, len(types)) if n else ():
            if 2 + 4 * types[t][0] + types[t][1] <= budget:
                yield from ((t,) + rest for rest in multisets(n - 1, t, budget - 2 - 4 * types[t][0] - types[t][1]))

    graphs = {}
    for n in range(1, 5):
        for ms in multisets(n, 0, level):
            nus, pairs = [types[t][1] for t in ms], list(itertools.combinations(range(n), 2))
            for es in itertools.product(range(max(nus) + 1), repeat=len(pairs)):
                edges = dict(zip(pairs, es))
                if [sum(edges[p] for p in pairs if v in p) for v in range(n)] != nus:
                    continue
                canon = min(tuple(edges[tuple(sorted((p[a], p[b])))] for a, b in pairs)
                            for p in itertools.permutations(range(n)) if all(ms[p[v]] == ms[v] for v in range(n)))
                graphs.setdefault((ms, canon), (ms, dict(zip(pairs, canon))))
    return list(graphs.values())


def mtp_basis(level: int) -> dict:
    """The moment-tensor basis of an MTP ``level`` (even, 2 to :data:`MTP_MAX_LEVEL`) as the fields of a level file.

    Returns radial_funcs_count, alpha_moments_count, alpha_index_basic ([mu, a1, a2, a3] rows),
    alpha_index_times ([i, j, multiplicity, k] rows) and alpha_moment_mapping (the scalar moments).
    """
    if level % 2 or not 2 <= level <= MTP_MAX_LEVEL:
        raise ValueError(f"MTP level {level} is not available; choose an even level from 2 to {MTP_MAX_LEVEL}")
    types = sorted((mu, nu) for mu in range(level) for nu in range(level) if 2 + 4 * mu + nu <= level)
    nodes: dict[tuple, tuple[int, tuple[int, ...], int]] = {}  # key -> (rank, moment types, smaller part)

    def add(key, rank, ms, part):
        nodes.setdefault(key, (rank, tuple(sorted(ms)), part))
        return key

    def contract(a, b, k):  # the fully contracted operand first: the result is a symmetric tensor
        (ra, ma, _), (rb, mb, _) = nodes[a], nodes[b]
        if k != ra:
            (a, ra, ma), (b, rb, mb) = (b, rb, mb), (a, ra, ma)
        assert k == ra or (a == b and ra - k == 1)
        return add(("c", a, b, k), ra + rb - 2 * k, ma + mb, min(len(ma), len(mb)))

    def build(vs, ms, edges, closed):  # mlip-2's order: scalar moments first, then products, then a chain
        basic = lambda v: add(("b", ms[v]), types[ms[v]][1], (ms[v],), 0)
        if len(vs) == 1:
            return basic(vs[0])
        link = lambda v, ws: sum(edges.get((min(v, w), max(v, w)), 0) for w in ws)
        if closed:
            scalars = [v for v in vs if types[ms[v]][1] == 0]
            if scalars:
                v = min(scalars, key=lambda v: ms[v])
                return contract(basic(v), build([w for w in vs if w != v], ms, edges, True), 0)
            comp = {vs[0]}
            while grow := {w for w in vs if w not in comp and link(w, comp)}:
                comp |= grow
            if len(comp) < len(vs):
                return contract(build(sorted(comp), ms, edges, True),
                                build([w for w in vs if w not in comp], ms, edges, True), 0)
        return contract(basic(vs[0]), build(vs[1:], ms, edges, False), link(vs[0], vs[1:]))

    scalars = [build(list(range(len(ms))), ms, edges, True) for ms, edges in _contraction_graphs(types, level)]
    ids, basic = {}, []
    for t in sorted({key[1] for key in nodes if key[0] == "b"}):
        ids[("b", t)] = len(basic)
        basic += [[types[t][0], *c] for c in _components(types[t][1])]
    mu = lambda key: sum(types[t][0] for t in nodes[key][1])
    order = sorted((key for key in nodes if key[0] == "c"),
                   key=lambda key: (len(nodes[key][1]), -nodes[key][2], mu(key), nodes[key][1], key[3]))
    count = len(basic)
    for key in order:
        ids[key], count = count, count + len(_components(nodes[key][0]))
    times = []
    for key in order:
        _, a, b, k = key
        ca, cb, free_a = _components(nodes[a][0]), _components(nodes[b][0]), nodes[a][0] - k
        for n, c in enumerate(_components(nodes[key][0])):
            axes = [0] * c[0] + [1] * c[1] + [2] * c[2]  # the first free indices belong to a, the rest to b
            for q in _components(k):
                pa, pb = list(q), list(q)
                for x in axes[:free_a]:
                    pa[x] += 1
                for x in axes[free_a:]:
                    pb[x] += 1
                i, j = sorted((ids[a] + ca.index(tuple(pa)), ids[b] + cb.index(tuple(pb))))
                times.append([i, j, math.factorial(k) // math.prod(map(math.factorial, q)), ids[key] + n])
    mapping = sorted(set(scalars), key=lambda key: (len(nodes[key][1]), mu(key), nodes[key][1], key))
    return {"radial_funcs_count": 1 + max(row[0] for row in basic), "alpha_moments_count": count,
            "alpha_index_basic": basic, "alpha_index_times": times, "alpha_moment_mapping": [ids[key] for key in mapping]}


def mtp_steps(maxiter: int) -> list[dict]:
    """The optimisation of :func:`train_mtp`, in motep's step format (scipy methods go through "minimize").

    A linear least-squares fit of the energy offsets and moment coefficients, ``maxiter`` BFGS
    iterations over all parameters (the radial functions too), a linear refit; ``maxiter=0``: the first
    linear fit alone (the radial functions keep their random start).

    BFGS keeps the full inverse-Hessian estimate (an MTP has tens to hundreds of parameters), as mlip-2's
    ``mlp train`` does. L-BFGS-B, which keeps scipy's default of 10 correction pairs, stalls on this badly
    conditioned loss: on lesson 03's full Si split (level 8, 100 iterations) it ends at a loss of 0.0050
    (the refit then drops it to 0.0035: the linear coefficients were far from optimal) against BFGS's
    0.0015, test E MAE 19.7 vs 13.0 meV/atom; on a few EMT Cu cells it stops after 26 iterations, 250×
    above BFGS's loss (docs/RESULTS.md, 2026-12-01).
    """
    if maxiter < 0:
        raise ValueError(f"maxiter must be >= 0, not {maxiter}")
    lls = {"method": "LLS", "optimized": ["species_coeffs", "moment_coeffs"]}
    if maxiter == 0:
        return [lls]
    return [lls, {"method": "minimize", "optimized": ["species_coeffs", "moment_coeffs", "radial_coeffs"],
                  "kwargs": {"method": "BFGS", "options": {"maxiter": maxiter}}}, dict(lls)]


class _LossLog(logging.Handler):
    """Collects the loss that motep's callback logs ("loss %d: %s") at the start of each step of a fit and
    after each of its iterations (a linear fit: one), and moves a progress bar one iteration on."""

    def __init__(self, bar) -> None:
        super().__init__(logging.INFO)
        self.losses: list[float] = []
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg != "loss %d: %s" or (record.args[0] == 0 and self.losses):
            return  # a step's start repeats the previous step's end
        self.losses.append(float(record.args[1]))
        if record.args[0] > 0:
            self.bar.update()
        self.bar.set_postfix(loss=f"{self.losses[-1]:.4g}")


class MTPCalculator(MTP):
    """motep's MTP calculator, also for Atoms of another size than the previous ones.

    motep 0.2.0 keeps the neighbour list of the first Atoms it sees and fails on one with a
    different number of atoms ("Wrong number of cutoff radii"); this rebuilds it instead.
    """

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        if "numbers" in system_changes:
            self.engine.neighbor_list = None
        super().calculate(atoms, list(properties), system_changes)


def untrained_mtp(level: int, species: list[str], min_dist: float, max_dist: float,
                  radial_basis_size: int = 8) -> str:
    """Text of an untrained MTP level file (mlip-2 format) for ``species``, the basis of :func:`mtp_basis`.

    ``min_dist`` and ``max_dist`` (Å) bound the radial basis (max_dist is the cutoff), ``radial_basis_size``
    Chebyshev polynomials per radial function (mlip-2 and mlearn: 8). ValueError for other levels or bad bounds.
    """
    basis = mtp_basis(level)
    if not species or not 0 < min_dist < max_dist or radial_basis_size < 1:
        raise ValueError(f"need species, 0 < min_dist < max_dist and radial_basis_size >= 1, got "
                         f"{species!r}, {min_dist}, {max_dist}, {radial_basis_size}")
    rows = lambda rows: ", ".join("{" + ", ".join(map(str, r)) + "}" for r in rows)
    return (
        "MTP\nversion = 1.1.0\npotential_name = MTP1m\n"
        f"species_count = {len(species)}\npotential_tag = \n"
        "radial_basis_type = RBChebyshev\n"
        f"\tmin_dist = {min_dist}\n\tmax_dist = {max_dist}\n"
        f"\tradial_basis_size = {radial_basis_size}\n\tradial_funcs_count = {basis['radial_funcs_count']}\n"
        f"alpha_moments_count = {basis['alpha_moments_count']}\n"
        f"alpha_index_basic_count = {len(basis['alpha_index_basic'])}\nalpha_index_basic = {{{rows(basis['alpha_index_basic'])}}}\n"
        f"alpha_index_times_count = {len(basis['alpha_index_times'])}\nalpha_index_times = {{{rows(basis['alpha_index_times'])}}}\n"
        f"alpha_scalar_moments = {len(basis['alpha_moment_mapping'])}\n"
        f"alpha_moment_mapping = {{{', '.join(map(str, basis['alpha_moment_mapping']))}}}\n"
    )


def repair_mtp(path: str | Path) -> Path:
    """Move ``radial_funcs_count`` above ``radial_coeffs`` in an .mtp file, in place; returns the path.

    motep 0.2.0's writer (``motep train``, ``write_mtp``) emits them the other way round, which
    its reader rejects with KeyError 'radial_funcs_count'. Files already in order are unchanged.
    """
    path = Path(path)
    lines = path.read_text().splitlines(keepends=True)
    heads = [ln.strip().split("=")[0].strip() for ln in lines]
    if "radial_coeffs" in heads and "radial_funcs_count" in heads:
        i, j = heads.index("radial_coeffs"), heads.index("radial_funcs_count")
        if j > i:
            lines.insert(i, "\t" + lines.pop(j).lstrip())
            path.write_text("".join(lines))
    return path


def min_distance(frames: list) -> float:
    """Shortest interatomic distance (Å, periodic images included) over ``frames``."""
    from ase.neighborlist import neighbor_list

    return float(min(neighbor_list("d", a, 6.0).min() for a in frames))


def load_mtp(path: str | Path, species: list[str], engine: str = "cext"):
    """motep's ASE calculator for a trained .mtp file (repaired first if written by motep 0.2.0).

    ``species`` are the chemical symbols in the order of the MTP's types (not stored in the file;
    :func:`train_mtp` orders them by atomic number).
    """
    mtp_data = read_mtp(repair_mtp(path))
    mtp_data.species = [atomic_numbers[s] for s in species]
    return MTPCalculator(mtp_data, engine=engine)


def train_mtp(frames: list, level: int = 8, max_dist: float = 5.0, radial_basis_size: int = 8,
              min_dist: float | None = None, maxiter: int = 100, weights: dict | None = None, seed: int = 1,
              workdir: str | Path | None = None, engine: str = "cext",
              progress: bool = True) -> tuple[MTPCalculator, list[float]]:
    """Train an MTP with motep on ASE Atoms carrying energy/forces/stress; returns its ASE calculator and the loss.

    ``level`` (even, up to :data:`MTP_MAX_LEVEL`; :func:`mtp_basis`) sets the moment-tensor basis, ``max_dist`` the cutoff (Å), ``radial_basis_size``
    the Chebyshev polynomials per radial function; ``min_dist`` (Å) defaults to the shortest distance in
    ``frames`` minus 0.05. The fit is :func:`mtp_steps`: a linear fit, ``maxiter`` BFGS iterations on
    all parameters, a linear refit. ``weights`` are motep's loss settings (``motep.loss.LossSetting``;
    its defaults: energy_weight 1 on (ΔE/N)² (eV/atom), forces_weight 0.01 on |ΔF|² per atom (eV/Å),
    stress_weight 0.001 on the virial per atom (VΔσ/N, eV), each a mean over configurations). ``seed``
    draws the random start; the fit is deterministic. ``progress`` shows a bar over the iterations (a linear
    fit counts one).

    Returns the calculator and the loss history (motep's weighted loss above): at the random start, after
    the linear fit, after each BFGS iteration and after the refit (``maxiter`` + 3 entries at most;
    2 for ``maxiter=0``). In ``workdir`` (default: a temporary folder, deleted)
    motep leaves ``intermediate_<step>.mtp`` and this writes ``initial.mtp`` and ``final.mtp``; reload the
    latter with :func:`load_mtp`.
    """
    from tqdm.auto import tqdm

    species = sorted({s for a in frames for s in a.get_chemical_symbols()}, key=atomic_numbers.get)
    if min_dist is None:
        min_dist = round(min_distance(frames) - 0.05, 2)
    steps = mtp_steps(maxiter)
    scipy_log = logging.getLogger("motep.optimizers.scipy")
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mtp_"))
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "initial.mtp").write_text(untrained_mtp(level, species, min_dist, max_dist, radial_basis_size))
        mtp_data = read_mtp(workdir / "initial.mtp")
        mtp_data.species = [atomic_numbers[s] for s in species]
        trainer = Trainer(mtp_data, rng=np.random.default_rng(seed), engine=engine, loss=weights, steps=steps)
        bar = stack.enter_context(tqdm(total=maxiter + 2 if maxiter else 1, desc=f"MTP level {level} fit",
                                       unit="it", leave=False, disable=not progress))
        log = _LossLog(bar)
        level_before, propagate_before = scipy_log.level, scipy_log.propagate
        scipy_log.addHandler(log)
        scipy_log.setLevel(logging.INFO)
        scipy_log.propagate = False  # the losses go to the history and the bar only
        try:
            # motep writes intermediate_<step>.mtp into the cwd and prints step timings
            with contextlib.chdir(workdir), contextlib.redirect_stdout(io.StringIO()):
                trainer.train(frames)
        finally:
            scipy_log.removeHandler(log)
            scipy_log.setLevel(level_before)
            scipy_log.propagate = propagate_before
        write_mtp(workdir / "final.mtp", mtp_data, legacy=True)  # legacy layout: readable by motep and mlip-2
    return MTPCalculator(mtp_data, engine=engine), log.losses


# --------------------------------------------------------------------------------------------
# Equivariant message-passing potentials: MACE and NequIP models, one small training loop
# --------------------------------------------------------------------------------------------
# The libraries build the models and their ASE calculators; the loss and the loop are written
# here in plain PyTorch so that the lesson can show them; BACKENDS holds what differs between the
# libraries. Both compute in float64 (see float64). Stresses everywhere follow ASE: Voigt order, eV/Å³,
# positive = tensile, σ = (1/V) ∂E/∂ε.


def reference_energies(frames: list) -> dict[str, float]:
    """Per-element energies E0 (eV/atom) from a least-squares fit of the total energies of ``frames``.

    The model then learns only E − Σ E0, which is of order meV/atom instead of eV/atom.
    """
    species = sorted({s for a in frames for s in a.get_chemical_symbols()}, key=atomic_numbers.get)
    counts = np.array([[a.get_chemical_symbols().count(s) for s in species] for a in frames], dtype=float)
    energies = np.array([a.get_potential_energy() for a in frames])
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return dict(zip(species, e0.tolist()))


def _avg_num_neighbors(frames: list, r_max: float) -> float:
    from ase.neighborlist import neighbor_list

    return float(np.mean([len(neighbor_list("i", a, r_max)) / len(a) for a in frames]))


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """torch's default dtype is float64 inside the block, and what it was before after it.

    MACE and NequIP models compute in float64: build, train and use them (their graphs and their ASE
    calculators create tensors of the default dtype) where it is float64.
    """
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def mace_model(frames: list, r_max: float = 5.0, channels: int = 16, max_L: int = 0,
               num_interactions: int = 2, correlation: int = 2, seed: int = 0):
    """An untrained MACE model (mace-torch) for the elements of ``frames``, float64, weights from ``seed``.

    ``r_max`` is the cutoff (Å); each atom sees ``num_interactions`` × r_max through message
    passing. ``channels`` and ``max_L`` set the hidden features ``channels × 0e (+ 1o + ...)``,
    ``correlation`` the body order of each message (2 = three-body). E0s from :func:`reference_energies`.
    torch's global random state and default dtype are left as they were.
    """
    import torch
    from e3nn import o3

    from .foundation import import_mace
    from .lesson import torch_seeded

    modules = import_mace("mace.modules")
    with torch_seeded(seed), float64():
        e0 = reference_energies(frames)
        zs = [atomic_numbers[s] for s in e0]
        hidden = "+".join(f"{channels}x{L}{'e' if L % 2 == 0 else 'o'}" for L in range(max_L + 1))
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        return modules.MACE(
            r_max=r_max, num_bessel=8, num_polynomial_cutoff=5, max_ell=2,
            interaction_cls=block, interaction_cls_first=block, num_interactions=num_interactions,
            num_elements=len(zs), hidden_irreps=o3.Irreps(hidden), MLP_irreps=o3.Irreps("16x0e"),
            atomic_energies=np.array(list(e0.values())), avg_num_neighbors=_avg_num_neighbors(frames, r_max),
            atomic_numbers=zs, correlation=correlation, gate=torch.nn.functional.silu,
        )


def nequip_model(frames: list, r_max: float = 5.0, features: int = 16, l_max: int = 1,
                 num_layers: int = 2, seed: int = 0):
    """An untrained NequIP model (nequip 0.19) for the elements of ``frames``, float64, weights from ``seed``.

    ``r_max`` is the cutoff (Å), ``features`` the channels per irrep up to ``l_max``,
    ``num_layers`` the interaction layers. Per-type energy shifts from :func:`reference_energies`,
    scales from the force RMS (eV/Å). The random states of torch, NumPy and Python and torch's default
    dtype are left as they were (nequip's ``set_global_state`` seeds and sets them on its first call);
    its other process settings (TorchScript fusion, e3nn flags) stay nequip's.
    """
    import random

    import torch
    from nequip.model import NequIPGNNModel
    from nequip.utils.global_state import set_global_state

    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]), float64():
        set_global_state(allow_tf32=False)
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        torch.manual_seed(seed)
        e0 = reference_energies(frames)
        force_rms = float(np.sqrt(np.mean(np.concatenate([a.get_forces().ravel() ** 2 for a in frames]))))
        return NequIPGNNModel(
            seed=seed, model_dtype="float64", type_names=list(e0), r_max=r_max, num_layers=num_layers,
            l_max=l_max, parity=False, num_features=features, radial_mlp_depth=1, radial_mlp_width=32,
            avg_num_neighbors=_avg_num_neighbors(frames, r_max),
            per_type_energy_shifts=e0, per_type_energy_scales={s: force_rms for s in e0},
        )


class MACEBackend:
    """mace-torch: its AtomicData graphs, its forward pass and its MACECalculator."""

    name = "MACE"

    def owns(self, model) -> bool:
        mace_modules = sys.modules.get("mace.modules")  # a MACE model exists only once mace-torch is imported
        return mace_modules is not None and isinstance(model, mace_modules.MACE)

    def graphs(self, model, frames: list) -> list:
        from .foundation import import_mace

        mace_data, tools = import_mace("mace.data"), import_mace("mace.tools")
        z_table = tools.AtomicNumberTable([int(z) for z in model.atomic_numbers])
        configs = mace_data.config_from_atoms_list(
            [a.copy() for a in frames], key_specification=mace_data.KeySpecification.from_defaults())
        return [mace_data.AtomicData.from_config(c, z_table=z_table, cutoff=float(model.r_max)) for c in configs]

    def forward(self, model, graphs: list, training: bool):
        from .foundation import import_mace

        batch = import_mace("mace.tools.torch_geometric").Batch.from_data_list(graphs)
        out = model(batch.to_dict(), training=training, compute_force=True, compute_stress=True)
        return out["energy"], out["forces"], out["stress"]

    def calculator(self, model):
        from .foundation import import_mace

        with float64():  # MACECalculator sets torch's default dtype to its own: this puts the previous one back
            return import_mace("mace.calculators").MACECalculator(models=model, device="cpu", default_dtype="float64")


class NequIPBackend:
    """nequip: its AtomicDataDict graphs (with its type mapper and neighbour list), forward pass and NequIPCalculator."""

    name = "NequIP"

    def owns(self, model) -> bool:
        nequip_nn = sys.modules.get("nequip.nn")  # a NequIP model exists only once nequip is imported
        return nequip_nn is not None and isinstance(model, nequip_nn.GraphModel)

    def transforms(self, model) -> list:
        from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform

        meta = model.metadata
        return [ChemicalSpeciesToAtomTypeMapper(model_type_names=meta["type_names"].split(" ")),
                NeighborListTransform(r_max=float(meta["r_max"]))]

    def graphs(self, model, frames: list) -> list:
        from nequip.data import from_ase

        transforms = self.transforms(model)
        graphs = []
        for a in frames:
            g = from_ase(a.copy())  # the copy drops the reference calculator: inputs only
            for t in transforms:
                g = t(g)
            graphs.append(g)
        return graphs

    def forward(self, model, graphs: list, training: bool):
        from nequip.data import AtomicDataDict

        out = model(AtomicDataDict.batched_from_list(graphs))
        return (out[AtomicDataDict.TOTAL_ENERGY_KEY].view(-1), out[AtomicDataDict.FORCE_KEY],
                out[AtomicDataDict.STRESS_KEY].view(-1, 3, 3))

    def calculator(self, model):
        from nequip.integrations.ase import NequIPCalculator

        return NequIPCalculator(model, device="cpu", transforms=self.transforms(model))


# The libraries whose models train_potential trains and calculator wraps, by name.
BACKENDS = {b.name: b for b in (MACEBackend(), NequIPBackend())}


def backend(model):
    """The entry of :data:`BACKENDS` whose library built ``model``; TypeError for any other model."""
    for b in BACKENDS.values():
        if b.owns(model):
            return b
    raise TypeError(f"{type(model).__name__} is no model of a known back-end ({', '.join(BACKENDS)}): "
                    "build one with potentials.mace_model or potentials.nequip_model")


def _graphs(model, frames: list) -> list:
    """One library input graph per frame (positions, cell, neighbour list) for ``model``.

    RuntimeError unless torch's default dtype is float64 (the graphs and reference tensors take it).
    """
    import torch

    if torch.get_default_dtype() != torch.float64:
        raise RuntimeError("MACE and NequIP models train and predict in float64: use them inside "
                           "`with potentials.float64():` or after `torch.set_default_dtype(torch.float64)`")
    return backend(model).graphs(model, frames)


def _forward(model, graphs: list, training: bool):
    """Energies (n,), forces (Σatoms, 3) and stresses (n, 3, 3) in eV, eV/Å, eV/Å³ for a batch of graphs."""
    return backend(model).forward(model, graphs, training)


def train_potential(model, frames: list, epochs: int = 50, lr: float = 5e-3, batch_size: int = 4,
                    weights: dict | None = None, val_frames: list | None = None, seed: int = 0,
                    progress: bool = True, checkpoint: str | Path | None = None) -> "training.History":
    """Fit a MACE or NequIP ``model`` to ``frames`` with Adam and a cosine learning-rate decay.

    Loss per batch = w_E ⟨(ΔE/N)²⟩ + w_F ⟨|ΔF|²⟩ + w_S ⟨|Δσ|²⟩ with E in eV, F in eV/Å, σ in GPa;
    ``weights`` default to {"energy": 100, "forces": 10, "stress": 0.01}. With ``val_frames`` the
    weights of the epoch with the lowest validation loss (``val_metric`` of the history) are kept.
    ``checkpoint``: a path for resumable training (:func:`mlcourse.training.train`).
    """
    import torch
    from ase.units import GPa

    from . import training

    w = {"energy": 100.0, "forces": 10.0, "stress": 0.01, **(weights or {})}
    if not frames:
        raise ValueError("no training frames")

    def prepare(fs):
        graphs = _graphs(model, fs)
        refs = [(torch.tensor(a.get_potential_energy()), len(a), torch.tensor(a.get_forces()),
                 torch.tensor(a.get_stress(voigt=False) / GPa)) for a in fs]
        return graphs, refs

    def batch_loss(graphs, refs, train_mode):
        energy, forces, stress = _forward(model, graphs, train_mode)
        n = torch.tensor([r[1] for r in refs], dtype=energy.dtype)
        e_ref = torch.stack([r[0] for r in refs]).to(energy.dtype)
        f_ref = torch.cat([r[2] for r in refs]).to(energy.dtype)
        s_ref = torch.stack([r[3] for r in refs]).to(energy.dtype)
        return (w["energy"] * torch.mean(((energy - e_ref) / n) ** 2)
                + w["forces"] * torch.mean(torch.sum((forces - f_ref) ** 2, dim=1))
                + w["stress"] * torch.mean((stress / GPa - s_ref) ** 2))

    train_graphs, train_refs = prepare(frames)
    val = prepare(val_frames) if val_frames else None
    generator = torch.Generator().manual_seed(seed)

    def batches():
        order = torch.randperm(len(frames), generator=generator).tolist()
        return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]

    def loss(idx):
        return batch_loss([train_graphs[i] for i in idx], [train_refs[i] for i in idx], True), len(idx)

    def validate():
        model.eval()
        return float(batch_loss(*val, False).detach())

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1), eta_min=lr / 20)
    return training.train(model, optimizer, batches, loss, epochs, validate if val else None,
                          epoch_scheduler=scheduler, generator=generator, checkpoint=checkpoint, progress=progress)


def calculator(model):
    """The library's own ASE calculator for a trained MACE or NequIP model (energy, forces, stress);
    use it where float64 is torch's default dtype (:func:`float64`)."""
    model.eval()
    return backend(model).calculator(model)


def error_table(calculators: dict, frames: list) -> "pd.DataFrame":
    """Test errors of each ASE calculator on ``frames`` (reference values on their calculators).

    One row per calculator, the columns of :func:`mlcourse.metrics.potential_errors` (units in
    :data:`mlcourse.metrics.UNITS`).
    """
    import pandas as pd

    from .foundation import labels, predict
    from .metrics import potential_errors

    reference = labels(frames)
    return pd.DataFrame({name: potential_errors(predict(calc, frames), reference) for name, calc in calculators.items()}).T
