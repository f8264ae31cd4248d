"""Lessons 05-06 family: crystal graph convolutional networks (CGCNN) and transfer learning.

Built on torch-geometric only (no compiled torch-scatter/torch-cluster): the convolution is
``torch_geometric.nn.CGConv`` (Xie & Grossman, PRL 120, 145301 (2018), eq. 5), pooling is
``global_mean_pool``. Periodic neighbour lists come from pymatgen.

Three calls for an instructor's own (structure, target) pairs::

    graphs = gnn.build_dataset(structures, targets)          # targets in any unit, e.g. eV/atom
    model, history = gnn.train_from_scratch(graphs[:800])    # 10 % of it held out for early stopping
    gnn.evaluate(model, graphs[800:])                        # {'mae', 'rmse', 'r2', 'n'} in that unit

Transfer learning (Devi, Butler, Sai Gautam, npj Comput. Mater. 10, 300 (2024)): :func:`pretrain`
on one property, or on several at once with one output head per property and the masked L1 loss
(multi-property pre-training, MPT); then :func:`fine_tune` with one of :data:`STRATEGIES`.
:func:`with_readout` moves a pre-trained network to another input design (:data:`READOUTS`: attention
pooling, or a pair of structures from :func:`pair_graph` such as the two end points of an ion hop).

The model owns the graph's cutoff and neighbour count (``CGCNN.config["cutoff"]``, ``["max_neighbors"]``,
defaults :data:`CUTOFF` and :data:`MAX_NEIGHBORS`); the graph builders read them from the model they are given.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import CGConv, global_mean_pool
from torch_geometric.nn.aggr import AttentionalAggregation
from torch_geometric.utils import scatter, softmax

from . import training
from .lesson import seed_everything, torch_seeded
STRATEGIES = ("all", "new_head", "last_layer", "conv")
CUTOFF = 8.0  # Å: default neighbour cutoff of a CGCNN's graphs (and the range of its Gaussian distance expansion)
MAX_NEIGHBORS = 12  # default number of nearest neighbours each atom receives an edge from
# Two sites closer than this (Å) are one atom twice (a 0 Å edge), see structure_to_graph. Far below any bond
# (H2: 0.74 Å): lesson 07's bands put the ion's images as close as 0.26 Å to host atoms on purpose, and its
# NASICON hosts have atoms 0.014 Å apart in the published data.
MIN_DISTANCE = 0.01


class IsolatedAtomError(ValueError):
    """An atom of a structure has no neighbour within the graph cutoff (see :func:`structure_to_graph`)."""


# --------------------------------------------------------------------------- graphs


def _as_structure(obj, entry):
    from pymatgen.core import Structure

    if isinstance(obj, Structure):
        return obj
    if isinstance(obj, dict):
        from .data import jarvis_structure

        return jarvis_structure(obj, entry)
    try:
        from ase import Atoms
        from pymatgen.io.ase import AseAtomsAdaptor

        if isinstance(obj, Atoms):
            return AseAtomsAdaptor.get_structure(obj)
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"entry {entry!r}: expected a pymatgen Structure, ASE Atoms or JARVIS dict, got {type(obj).__name__}")


def graph_settings(model: CGCNN | None = None) -> tuple[float, int]:
    """(cutoff in Å, max_neighbors) of the graphs ``model`` reads; without a model those of ``CGCNN()``."""
    if model is None:
        return CUTOFF, MAX_NEIGHBORS
    return model.config["cutoff"], model.config["max_neighbors"]


def structure_to_graph(structure, target=None, model: CGCNN | None = None, entry: object = None) -> Data:
    """Periodic crystal graph for ``model`` (see :func:`graph_settings`): atoms are nodes (``z``, atomic
    numbers), each atom receives edges from its ``max_neighbors`` nearest neighbours within ``cutoff`` (Å,
    periodic images included); ``edge_dist`` holds their distances (Å). ``y`` is the target as a
    (1, n_tasks) float tensor (NaN = missing).

    Raises :class:`IsolatedAtomError` naming ``entry`` and the site when an atom has no neighbour within the
    cutoff; ValueError naming the two sites when atoms overlap (closer than :data:`MIN_DISTANCE`), or the
    site of a disordered structure.
    """
    from .data import check_ordered

    cutoff, max_neighbors = graph_settings(model)
    s = check_ordered(_as_structure(structure, entry), entry)
    if len(s) == 0:
        raise ValueError(f"entry {entry!r}: structure has no atoms")
    center, neighbor, _, dist = s.get_neighbor_list(r=cutoff)
    if len(dist) and dist.min() < MIN_DISTANCE:
        k = int(np.argmin(dist))
        i, j = sorted((int(center[k]), int(neighbor[k])))
        raise ValueError(f"entry {entry!r}: sites {i} ({s[i].species_string}) and {j} ({s[j].species_string}) "
                         f"overlap, {dist[k]:.3g} Å apart (an atom counted twice?); remove the duplicate or fix "
                         "the coordinates")
    order = np.lexsort((dist, center))
    center, neighbor, dist = center[order], neighbor[order], dist[order]
    counts = np.bincount(center, minlength=len(s))
    if (counts == 0).any():
        i = int(np.flatnonzero(counts == 0)[0])
        raise IsolatedAtomError(f"entry {entry!r}: site {i} ({s[i].species_string}) has no neighbour within the "
                                f"cutoff of {cutoff} Å; increase the cutoff or check the structure")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(center)) - np.repeat(starts, counts)
    keep = rank < max_neighbors
    y = torch.full((1, 1), float("nan")) if target is None else torch.as_tensor(
        np.atleast_1d(np.asarray(target, dtype=np.float32)), dtype=torch.float32).reshape(1, -1)
    return Data(z=torch.as_tensor([site.specie.Z for site in s], dtype=torch.long),
                edge_index=torch.as_tensor(np.stack([neighbor[keep], center[keep]]), dtype=torch.long),
                edge_dist=torch.as_tensor(dist[keep], dtype=torch.float32), y=y, num_nodes=len(s))


def build_dataset(structures: Sequence, targets, model: CGCNN | None = None, ids: Sequence | None = None,
                  allow_missing: bool = False, skip_isolated: bool = False, progress: bool = False) -> list[Data]:
    """Crystal graphs of (structure, target) pairs for ``model`` (its cutoff and neighbour count, see
    :func:`graph_settings`), ready for :func:`train_from_scratch`.

    ``structures``: pymatgen Structures, ASE Atoms or JARVIS dicts. ``targets``: shape (n,) or
    (n, n_tasks), any unit (the model learns in that unit). ``ids`` name the entries
    in error messages (default: their positions), one per structure. NaN or infinite targets raise
    ValueError naming the entry (:func:`mlcourse.data.check_targets`), NaN unless ``allow_missing``
    (multi-property data, where NaN marks a missing property; a row with no property at all still raises).

    A structure with an atom that has no neighbour within the cutoff raises :class:`IsolatedAtomError`
    naming it; with ``skip_isolated=True`` such structures are left out with a warning that names each one.
    Every graph carries ``entry`` (its id) so that results can be joined back.
    """
    import pandas as pd

    from .data import check_targets

    targets = np.asarray(targets, dtype=float)
    if targets.ndim == 1:
        targets = targets[:, None]
    if len(structures) != len(targets):
        raise ValueError(f"{len(structures)} structures but {len(targets)} targets")
    if len(structures) == 0:
        raise ValueError("empty dataset: no structures given")
    ids = list(range(len(structures))) if ids is None else list(ids)
    if len(ids) != len(structures):
        raise ValueError(f"{len(ids)} ids for {len(structures)} structures: give one id per structure, or none")
    check_targets(pd.DataFrame(targets, index=ids), allow_missing)
    it = zip(ids, structures, targets)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(ids), desc="graphs")
    graphs, skipped = [], []
    for i, s, t in it:
        try:
            g = structure_to_graph(s, t, model, entry=i)
        except IsolatedAtomError:
            if not skip_isolated:
                raise
            skipped.append(str(i))
            continue
        g.entry = str(i)
        graphs.append(g)
    if skipped:
        warnings.warn(f"left out {len(skipped)} structure(s) with an atom that has no neighbour within "
                      f"{graph_settings(model)[0]} Å: {', '.join(skipped)}", stacklevel=2)
    if not graphs:
        raise ValueError("no structure left after leaving out isolated atoms")
    return graphs


def pair_graph(first, second, target=None, model: CGCNN | None = None, entry: object = None) -> Data:
    """Two structures in one graph for ``model`` (no edges between them), for the ``pair`` readouts: the
    nodes of ``first`` then those of ``second``, with ``part`` = 0 or 1 marking which one a node belongs to."""
    a = structure_to_graph(first, target, model, entry)
    b = structure_to_graph(second, target, model, entry)
    g = Data(z=torch.cat([a.z, b.z]), edge_index=torch.cat([a.edge_index, b.edge_index + a.num_nodes], dim=1),
             edge_dist=torch.cat([a.edge_dist, b.edge_dist]), y=a.y, num_nodes=a.num_nodes + b.num_nodes,
             part=torch.cat([torch.zeros(a.num_nodes, dtype=torch.long), torch.ones(b.num_nodes, dtype=torch.long)]))
    g.entry = str(entry)
    return g


def split_dataset(dataset: Sequence[Data], val_fraction: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """Random (train, validation) split; ValueError if either part would be empty."""
    n = len(dataset)
    n_val = int(round(val_fraction * n))
    if n < 2 or n_val < 1 or n_val >= n:
        raise ValueError(f"cannot split {n} graph(s) into train and validation with val_fraction={val_fraction}: "
                         "both parts need at least one graph")
    perm = np.random.default_rng(seed).permutation(n)
    return [dataset[i] for i in perm[n_val:]], [dataset[i] for i in perm[:n_val]]


def _targets(dataset: Sequence[Data]) -> np.ndarray:
    return torch.cat([d.y for d in dataset]).numpy()


# --------------------------------------------------------------------------- model


class FactorisedCGConv(CGConv):
    """``CGConv`` with the same parameters and the same output, computed faster on CPU.

    The gate and core layers act on z_ij = v_i ⊕ v_j ⊕ u_ij, so W z_ij = W_i v_i + W_j v_j + W_u u_ij:
    the atom parts are computed once per atom and gathered, instead of once per edge (about 4x fewer
    multiply-adds with 12 neighbours). ``tests/test_gnn.py`` checks it against ``CGConv.forward``.
    """

    def forward(self, x, edge_index, edge_attr=None):
        h = x.size(-1)
        w = torch.cat([self.lin_f.weight, self.lin_s.weight])  # (2h, 2h + edge_dim)
        b = torch.cat([self.lin_f.bias, self.lin_s.bias]) if self.lin_f.bias is not None else 0.0
        src, dst = edge_index
        pre = (x @ w[:, :h].T)[dst] + (x @ w[:, h:2 * h].T)[src] + b
        if edge_attr is not None:
            pre = pre + edge_attr @ w[:, 2 * h:].T
        gate, core = pre.chunk(2, dim=-1)
        msg = torch.sigmoid(gate) * F.softplus(core)
        out = scatter(msg, dst, dim=0, dim_size=x.size(0), reduce="sum")
        out = out if self.bn is None else self.bn(out)
        return out + x


class Readout:
    """Mean pooling: the crystal vector is the mean of the atom vectors, then the hidden layer."""

    parts = 1  # pooled vectors per crystal: the head reads parts × fc_hidden numbers

    def __init__(self, name: str):
        self.name = name

    def gate(self, hidden: int) -> nn.Module | None:
        """The learned module this pooling needs (a CGCNN keeps it as ``attention``), or None."""
        return None

    def pool(self, model: CGCNN, x: torch.Tensor, index: torch.Tensor, batch) -> torch.Tensor:
        """Crystal vectors (n_graphs, parts × fc_hidden) from atom vectors ``x`` of graphs ``index``."""
        return model._dense(global_mean_pool(x, index, size=batch.num_graphs))


class AttentionReadout(Readout):
    """Attention pooling: a softmax-weighted mean of the atom vectors, weights from a learned gate."""

    def gate(self, hidden: int) -> nn.Module:
        return AttentionalAggregation(nn.Linear(hidden, 1))

    def pool(self, model: CGCNN, x: torch.Tensor, index: torch.Tensor, batch) -> torch.Tensor:
        return model._dense(model.attention(x, index, dim_size=batch.num_graphs))


class PairReadout(Readout):
    """A graph of two structures (:func:`pair_graph`, e.g. the initial and final state of a hop): each
    mean-pooled, their vectors concatenated, with ``difference`` also the second minus the first."""

    def __init__(self, name: str, difference: bool):
        super().__init__(name)
        self.difference = difference
        self.parts = 3 if difference else 2

    def pool(self, model: CGCNN, x: torch.Tensor, index: torch.Tensor, batch) -> torch.Tensor:
        if getattr(batch, "part", None) is None:
            raise ValueError(f"readout {self.name!r} needs pair graphs (gnn.pair_graph), got graphs without 'part'")
        n = batch.num_graphs
        h = model._dense(global_mean_pool(x, 2 * index + batch.part, size=2 * n)).view(n, 2, -1)
        parts = [h[:, 0], h[:, 1]] + ([h[:, 1] - h[:, 0]] if self.difference else [])
        return torch.cat(parts, dim=-1)


# How atom vectors become one crystal vector, by name (CGCNN's ``readout``, :func:`with_readout`).
READOUTS = {r.name: r for r in (Readout("mean"), AttentionReadout("attention"), PairReadout("pair", difference=False),
                                PairReadout("pair_difference", difference=True))}


class CGCNN(nn.Module):
    """CGCNN: atom embedding, ``n_conv`` CGConv layers (gated, batch-normalised, softplus), pooling
    (``readout``, a name in :data:`READOUTS`), a hidden layer and a linear head with one output per task.

    It reads graphs with edges to the ``max_neighbors`` nearest atoms within ``cutoff`` (Å; the graph
    builders take both from the model), whose distances it expands in ``n_gaussians`` Gaussians on
    [0, cutoff] Å. Outputs are normalised; ``y_mean``/``y_std`` (buffers, target units) turn them back
    into targets (see :func:`predict`).
    """

    def __init__(self, n_tasks: int = 1, hidden: int = 64, n_conv: int = 3, fc_hidden: int = 128,
                 cutoff: float = CUTOFF, max_neighbors: int = MAX_NEIGHBORS, n_gaussians: int = 40, max_z: int = 100,
                 tasks: Sequence[str] | None = None, readout: str = "mean"):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; choose one of {', '.join(READOUTS)}")
        self.config = dict(n_tasks=n_tasks, hidden=hidden, n_conv=n_conv, fc_hidden=fc_hidden, cutoff=cutoff,
                           max_neighbors=max_neighbors, n_gaussians=n_gaussians, max_z=max_z,
                           tasks=list(tasks) if tasks is not None else [f"task{i}" for i in range(n_tasks)],
                           readout=readout)
        self.pooling = READOUTS[readout]
        self.embedding = nn.Embedding(max_z + 1, hidden)
        self.register_buffer("centers", torch.linspace(0.0, cutoff, n_gaussians))
        self.width = cutoff / (n_gaussians - 1)
        self.convs = nn.ModuleList(FactorisedCGConv(hidden, dim=n_gaussians, aggr="add", batch_norm=True) for _ in range(n_conv))
        self.attention = self.pooling.gate(hidden)
        self.fc = nn.Linear(hidden, fc_hidden)
        self.head = nn.Linear(self.head_inputs, n_tasks)
        self.register_buffer("y_mean", torch.zeros(n_tasks))
        self.register_buffer("y_std", torch.ones(n_tasks))

    @property
    def tasks(self) -> list[str]:
        return self.config["tasks"]

    @property
    def head_inputs(self) -> int:
        """Length of the crystal vector the head reads: fc_hidden per pooled part (3 for pair_difference)."""
        return self.config["fc_hidden"] * self.pooling.parts

    def expand(self, dist: torch.Tensor) -> torch.Tensor:
        """Gaussian expansion of distances (Å) -> (n_edges, n_gaussians)."""
        return torch.exp(-((dist[:, None] - self.centers) / self.width) ** 2)

    def atom_features(self, batch) -> torch.Tensor:
        """Atom vectors (n_atoms, hidden) after the convolutions."""
        if int(batch.z.max()) > self.config["max_z"]:
            raise ValueError(f"atomic number {int(batch.z.max())} exceeds max_z={self.config['max_z']}")
        x = self.embedding(batch.z)
        e = self.expand(batch.edge_dist)
        for conv in self.convs:
            x = F.softplus(conv(x, batch.edge_index, e))
        return x

    def features(self, batch) -> torch.Tensor:
        """Crystal feature vectors (n_graphs, head_inputs) before the head."""
        x = self.atom_features(batch)
        index = batch.batch if batch.batch is not None else torch.zeros(x.size(0), dtype=torch.long)
        return self.pooling.pool(self, x, index, batch)

    def _dense(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.fc(F.softplus(pooled)))

    def forward(self, batch) -> torch.Tensor:
        """Normalised predictions (n_graphs, n_tasks)."""
        return self.head(self.features(batch))

    def replace_head(self, n_tasks: int, tasks: Sequence[str] | None = None) -> None:
        """A freshly initialised head with ``n_tasks`` outputs (normaliser reset)."""
        self.head = nn.Linear(self.head_inputs, n_tasks)
        self.config["n_tasks"] = n_tasks
        self.config["tasks"] = list(tasks) if tasks is not None else [f"task{i}" for i in range(n_tasks)]
        self.y_mean = torch.zeros(n_tasks)
        self.y_std = torch.ones(n_tasks)


def seeded_model(seed: int, **kwargs) -> CGCNN:
    """``CGCNN(**kwargs)`` with weights drawn from ``seed``; torch's global random state is left as it was."""
    with torch_seeded(seed):
        return CGCNN(**kwargs)


def with_readout(pretrained: CGCNN, readout: str, n_tasks: int = 1, seed: int = 0) -> CGCNN:
    """A new CGCNN with another readout (a name in :data:`READOUTS`) that starts from ``pretrained``'s
    embedding, convolutions and hidden layer; the head (and the attention gate) are freshly initialised
    from ``seed``. Fine-tune it next."""
    model = seeded_model(seed, **{**pretrained.config, "readout": readout, "n_tasks": n_tasks, "tasks": None})
    shared = {k: v for k, v in pretrained.state_dict().items() if k.split(".")[0] in ("embedding", "convs", "fc")}
    model.load_state_dict(shared, strict=False)
    return model


def attention_weights(model: CGCNN, graph: Data) -> np.ndarray:
    """Attention pooling weights (summing to 1) of every atom of one graph, for a model with
    ``readout="attention"``: which atoms the crystal vector is made of."""
    if model.attention is None:
        raise ValueError(f"the model pools with {model.config['readout']!r}, not attention")
    model.eval()
    with torch.no_grad():
        x = model.atom_features(graph)
        gate = model.attention.gate_nn(x)
        return softmax(gate, torch.zeros(x.size(0), dtype=torch.long), dim=0)[:, 0].numpy().astype(float)


def mean_pool_teaching(x: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
    """Teaching version of ``global_mean_pool``: sum node vectors per graph with ``scatter``, divide by counts."""
    total = scatter(x, batch, dim=0, dim_size=n_graphs, reduce="sum")
    count = scatter(torch.ones_like(batch, dtype=x.dtype), batch, dim=0, dim_size=n_graphs, reduce="sum")
    return total / count.clamp(min=1)[:, None]


def cgconv_teaching(conv: CGConv, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
    """Teaching version of ``CGConv.forward`` (Xie & Grossman eq. 5), with the layer's own weights:
    v_i + BN(Σ_j σ(z_ij W_f + b_f) ⊙ softplus(z_ij W_s + b_s)), z_ij = v_i ⊕ v_j ⊕ u_ij, for edges j → i."""
    src, dst = edge_index
    z = torch.cat([x[dst], x[src], edge_attr], dim=-1)
    msg = torch.sigmoid(conv.lin_f(z)) * F.softplus(conv.lin_s(z))
    agg = scatter(msg, dst, dim=0, dim_size=x.size(0), reduce="sum")
    return x + (conv.bn(agg) if conv.bn is not None else agg)


# --------------------------------------------------------------------------- training


def masked_l1(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L = (1/N) Σ |y_p − y_t| δ with δ = 1 where the property exists (not NaN); N = number of such entries."""
    mask = ~torch.isnan(y)
    if not mask.any():
        return pred.sum() * 0.0
    return (pred[mask] - y[mask]).abs().mean()


def _set_normaliser(model: CGCNN, dataset: Sequence[Data]) -> None:
    y = _targets(dataset)
    mean = np.nanmean(y, axis=0)
    std = np.nanstd(y, axis=0)
    std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)
    model.y_mean = torch.as_tensor(np.nan_to_num(mean), dtype=torch.float32)
    model.y_std = torch.as_tensor(std, dtype=torch.float32)


def _frozen_bn_to_eval(model: CGCNN) -> None:
    """Batch-norm layers whose weights are frozen keep their pre-trained running statistics."""
    for conv in model.convs:
        if conv.bn is not None and not any(p.requires_grad for p in conv.parameters()):
            conv.bn.eval()


def _val_mae(model: CGCNN, loader) -> float:
    model.eval()
    errs, n = 0.0, 0
    with torch.no_grad():
        for b in loader:
            y = (b.y - model.y_mean) / model.y_std
            mask = ~torch.isnan(y)
            errs += float((model(b)[mask] - y[mask]).abs().sum())
            n += int(mask.sum())
    return errs / max(n, 1)


def fit(model: CGCNN, train: Sequence[Data], val: Sequence[Data] | None = None, epochs: int = 100,
        lr: float = 1e-3, batch_size: int = 64, patience: int = 20, weight_decay: float = 0.0, seed: int = 0,
        progress: bool = True, checkpoint: str | Path | None = None, normalise: bool = True) -> training.History:
    """Train ``model`` in place with AdamW and the masked L1 loss on normalised targets.

    With ``val``, the state with the lowest validation MAE (normalised units, ``val_metric`` of the
    history) is kept, with early stopping after ``patience`` epochs without improvement. Only
    parameters with ``requires_grad`` are trained. ``normalise`` sets the model's target mean/std
    from ``train``. ``checkpoint``: a path for resumable training (:func:`mlcourse.training.train`);
    save the trained model with :func:`save_model`.
    """
    if len(train) == 0:
        raise ValueError("empty training set")
    n_tasks = model.config["n_tasks"]
    if train[0].y.shape[-1] != n_tasks:
        raise ValueError(f"targets have {train[0].y.shape[-1]} column(s) but the model has {n_tasks} task(s)")
    seed_everything(seed)
    if normalise:
        _set_normaliser(model, train)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(list(train), batch_size=batch_size, shuffle=True, generator=gen)
    val_loader = DataLoader(list(val), batch_size=batch_size) if val else None
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters (everything is frozen)")

    def batches():
        _frozen_bn_to_eval(model)  # after the loop's model.train()
        return loader  # each pass draws from gen: a seed for the loader, then the shuffle

    def loss(b):
        return masked_l1(model(b), (b.y - model.y_mean) / model.y_std), b.num_graphs

    validate = None if val_loader is None else (lambda: _val_mae(model, val_loader))
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return training.train(model, optimizer, batches, loss, epochs, validate, patience, generator=gen,
                          checkpoint=checkpoint, progress=progress)


def train_from_scratch(dataset: Sequence[Data], val_fraction: float = 0.1, seed: int = 0,
                       model_kwargs: dict | None = None, **fit_kwargs) -> tuple[CGCNN, training.History]:
    """A new CGCNN trained on ``dataset`` (``val_fraction`` of it held out for early stopping).

    ``model_kwargs`` go to :class:`CGCNN` (hidden, n_conv, ...), the rest to :func:`fit`.
    Predictions come out in the targets' unit.
    """
    train, val = split_dataset(dataset, val_fraction, seed)
    model = seeded_model(seed, n_tasks=train[0].y.shape[-1], **(model_kwargs or {}))
    return model, fit(model, train, val, seed=seed, **fit_kwargs)


def multi_property_dataset(datasets: dict[str, Sequence[Data]]) -> list[Data]:
    """Merge single-property datasets into one with a target column per property (NaN where absent)."""
    names = list(datasets)
    out = []
    for k, name in enumerate(names):
        for d in datasets[name]:
            if d.y.shape[-1] != 1:
                raise ValueError(f"dataset {name!r} must have one target column, not {d.y.shape[-1]}")
            y = torch.full((1, len(names)), float("nan"))
            y[0, k] = d.y[0, 0]
            g = d.clone()
            g.y = y
            out.append(g)
    return out


def pretrain(datasets: Sequence[Data] | dict[str, Sequence[Data]], val_fraction: float = 0.1, seed: int = 0,
             model_kwargs: dict | None = None, **fit_kwargs) -> tuple[CGCNN, training.History]:
    """Pre-train on one property (a dataset) or several (a dict name -> dataset: multi-property
    pre-training with one head output per property and the masked L1 loss :func:`masked_l1`)."""
    if isinstance(datasets, dict):
        if not datasets:
            raise ValueError("no datasets to pre-train on")
        merged = multi_property_dataset(datasets)
        tasks = list(datasets)
    else:
        merged, tasks = list(datasets), None
    train, val = split_dataset(merged, val_fraction, seed)
    model = seeded_model(seed, n_tasks=train[0].y.shape[-1], tasks=tasks, **(model_kwargs or {}))
    return model, fit(model, train, val, seed=seed, **fit_kwargs)


def prepare_fine_tune(pretrained: CGCNN, strategy: str = "all", n_tasks: int = 1, conv_layers: Sequence[int] | None = None,
                      seed: int = 0) -> CGCNN:
    """A copy of ``pretrained`` set up for one of the four FT strategies of Devi et al. (2024):

    - ``"all"``: every layer trainable (the pre-trained head is reused when its size fits);
    - ``"new_head"``: a freshly initialised prediction head, every layer trainable;
    - ``"last_layer"``: only the prediction head trainable;
    - ``"conv"``: only the selected interaction (convolution) layers ``conv_layers`` (default: the
      last one) plus the layers after pooling trainable; embedding and other convolutions frozen.

    A multi-property model (or any head of the wrong size) always gets a new head, drawn from ``seed``
    (torch's global random state is left as it was).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown fine-tuning strategy {strategy!r}; choose one of {STRATEGIES}")
    model = copy.deepcopy(pretrained)
    if strategy == "new_head" or model.config["n_tasks"] != n_tasks:
        with torch_seeded(seed):
            model.replace_head(n_tasks)
    for p in model.parameters():
        p.requires_grad = strategy in ("all", "new_head")
    if strategy == "last_layer":
        for p in model.head.parameters():
            p.requires_grad = True
    if strategy == "conv":
        layers = [len(model.convs) - 1] if conv_layers is None else list(conv_layers)
        for i in layers:
            if not -len(model.convs) <= i < len(model.convs):
                raise ValueError(f"conv layer {i} does not exist; the model has {len(model.convs)}")
            for p in model.convs[i].parameters():
                p.requires_grad = True
        after_pooling = [*model.fc.parameters(), *model.head.parameters()]
        if model.attention is not None:
            after_pooling += list(model.attention.parameters())
        for p in after_pooling:
            p.requires_grad = True
    return model


def fine_tune(pretrained: CGCNN, dataset: Sequence[Data], strategy: str = "all", conv_layers: Sequence[int] | None = None,
              val_fraction: float = 0.1, seed: int = 0, **fit_kwargs) -> tuple[CGCNN, training.History]:
    """Fine-tune a copy of ``pretrained`` on ``dataset`` with a named strategy (see :func:`prepare_fine_tune`).

    The pre-trained model is left unchanged; the target normaliser is refitted on the FT data.
    """
    train, val = split_dataset(dataset, val_fraction, seed)
    model = prepare_fine_tune(pretrained, strategy, train[0].y.shape[-1], conv_layers, seed)
    return model, fit(model, train, val, seed=seed, **fit_kwargs)


# --------------------------------------------------------------------------- prediction and evaluation


def predict(model: CGCNN, dataset: Sequence[Data], batch_size: int = 256) -> np.ndarray:
    """Batched predictions in the targets' unit: shape (n,) for one task, (n, n_tasks) otherwise."""
    model.eval()
    out = []
    with torch.no_grad():
        for b in DataLoader(list(dataset), batch_size=batch_size):
            out.append(model(b) * model.y_std + model.y_mean)
    pred = torch.cat(out).numpy().astype(float)
    return pred[:, 0] if pred.shape[1] == 1 else pred


def evaluate(model: CGCNN, dataset: Sequence[Data], task: int = 0, prop: str | None = None) -> dict:
    """MAE, RMSE (targets' unit), R² and n on ``dataset`` for output ``task``.

    With ``prop`` in :data:`mlcourse.data.PROPERTY_SCALES` (scaled transfer-learning targets), also
    ``mae_phys`` and ``rmse_phys`` in physical units and ``unit``.
    """
    from .data import PROPERTY_SCALES
    from .metrics import regression_metrics

    pred = predict(model, dataset)
    pred = pred if pred.ndim == 1 else pred[:, task]
    y = _targets(dataset)[:, task]
    ok = ~np.isnan(y)
    if ok.sum() < 2:
        raise ValueError(f"need at least 2 targets to evaluate, got {int(ok.sum())}")
    m = {**regression_metrics(y[ok], pred[ok]), "n": int(ok.sum())}
    if prop is not None:
        lo, hi, unit = PROPERTY_SCALES[prop] if prop in PROPERTY_SCALES else (None, None, None)
        if unit is None:
            raise KeyError(f"no inverse scaling known for {prop!r}; report errors in scaled units")
        m.update(mae_phys=m["mae"] * (hi - lo) / 2, rmse_phys=m["rmse"] * (hi - lo) / 2, unit=unit)
    return m


def save_model(model: CGCNN, path: str | Path, half: bool = False) -> Path:
    """Save config and weights (``half``: store float tensors in float16 to halve the file)."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": model.config, "state_dict": state}, path)
    return path


def load_model(path: str | Path) -> CGCNN:
    """A CGCNN saved by :func:`save_model` (loaded with ``weights_only=True``), in eval mode."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = CGCNN(**ckpt["config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    return model.eval()
