"""Lessons 05-06 family: crystal graph networks (CGCNN, ALIGNN) and transfer learning.

Built on torch-geometric only (no compiled torch-scatter/torch-cluster): CGCNN's convolution is
``torch_geometric.nn.CGConv`` (Xie & Grossman, PRL 120, 145301 (2018), eq. 5), pooling is
``global_mean_pool``. Periodic neighbour lists come from pymatgen. :class:`ALIGNN` (Choudhary & DeCost,
npj Comput. Mater. 7, 185 (2021); the network of Devi et al.) adds bond angles through the line graph
of the bonds; it is written here on torch-geometric because the ``alignn`` package needs DGL, which
has no build for the kit's torch.

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
defaults :data:`CUTOFF` and :data:`MAX_NEIGHBORS`) and whether it reads bond angles (``reads_angles``); the
graph builders read them from the model they are given, e.g. ``gnn.build_dataset(structures, targets,
model=gnn.ALIGNN())``, and ``gnn.train_from_scratch(graphs, model_kwargs={"arch": "alignn"})``.
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
# Å: in graphs for a model that reads angles, neighbours this close to an atom's max_neighbors-th are kept too
SHELL_TOLERANCE = 1e-4


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


class AngleGraph(Data):
    """A crystal graph with its line graph, for networks that read bond angles (:class:`ALIGNN`).

    Besides the atom graph of :class:`~torch_geometric.data.Data` it holds ``line_index`` (2, n_triplets):
    pairs (a, b) of bonds a = u → v and b = v → w that meet at atom v, as positions in ``edge_index``;
    and ``angle_cos`` (n_triplets,): cos θ of the angle u–v–w at v. Batching shifts ``line_index`` by the
    number of bonds of the graphs before it, so the torch-geometric DataLoader batches it as it does edges.
    """

    def __inc__(self, key, value, *args, **kwargs):
        if key == "line_index":
            return self.edge_index.size(1)
        return super().__inc__(key, value, *args, **kwargs)


def line_graph(edge_index: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Line graph of a crystal graph: every pair of bonds a = u → v, b = v → w (as in DGL's
    ``line_graph``, which ALIGNN uses, the pair b = v → u back along a is included), and cos θ of the
    angle at v between v → u and v → w.

    ``edge_index`` (2, n_bonds): (source, target) atoms; ``vectors`` (n_bonds, 3): for bond j → i, the
    position of j's periodic image minus that of i (Å). Returns ``line_index`` (2, n_triplets) and cos θ.
    """
    src, dst = edge_index
    n_bonds = len(src)
    n_atoms = int(edge_index.max()) + 1 if n_bonds else 0
    by_src = np.argsort(src, kind="stable")  # the bonds leaving each atom, atom by atom
    out_degree = np.bincount(src, minlength=n_atoms)
    out_start = np.concatenate([[0], np.cumsum(out_degree)[:-1]])
    count = out_degree[dst]  # bond a = u → v pairs with every bond leaving v
    a = np.repeat(np.arange(n_bonds), count)
    rank = np.arange(len(a)) - np.repeat(np.cumsum(count) - count, count)
    b = by_src[out_start[dst[a]] + rank]
    to_u, to_w = vectors[a], -vectors[b]  # v → u and v → w
    cos = np.einsum("ij,ij->i", to_u, to_w) / (np.linalg.norm(to_u, axis=1) * np.linalg.norm(to_w, axis=1))
    return np.stack([a, b]), np.clip(cos, -1.0, 1.0)


def graph_settings(model: GraphNet | None = None) -> tuple[float, int]:
    """(cutoff in Å, max_neighbors) of the graphs ``model`` reads; without a model those of ``CGCNN()``."""
    if model is None:
        return CUTOFF, MAX_NEIGHBORS
    return model.config["cutoff"], model.config["max_neighbors"]


def structure_to_graph(structure, target=None, model: GraphNet | None = None, entry: object = None) -> Data:
    """Periodic crystal graph for ``model`` (see :func:`graph_settings`): atoms are nodes (``z``, atomic
    numbers), each atom receives edges from its ``max_neighbors`` nearest neighbours within ``cutoff`` (Å,
    periodic images included); ``edge_dist`` holds their distances (Å). ``y`` is the target as a
    (1, n_tasks) float tensor (NaN = missing).

    For a model that reads bond angles (``model.reads_angles``, :class:`ALIGNN`) it is an :class:`AngleGraph`
    with the line graph (:func:`line_graph`), and, as in ALIGNN's k-nearest graphs
    (``jarvis.core.graphs.nearest_neighbor_edges``), an atom keeps every neighbour as close as its
    ``max_neighbors``-th (to :data:`SHELL_TOLERANCE`): a whole shell, so that the graph does not depend on
    how ties are broken (the order of the sites, or rounding after a rotation).

    Raises :class:`IsolatedAtomError` naming ``entry`` and the site when an atom has no neighbour within the
    cutoff; ValueError naming the two sites when atoms overlap (closer than :data:`MIN_DISTANCE`), or the
    site of a disordered structure.
    """
    from .data import check_ordered

    cutoff, max_neighbors = graph_settings(model)
    s = check_ordered(_as_structure(structure, entry), entry)
    if len(s) == 0:
        raise ValueError(f"entry {entry!r}: structure has no atoms")
    center, neighbor, images, dist = s.get_neighbor_list(r=cutoff)
    if len(dist) and dist.min() < MIN_DISTANCE:
        k = int(np.argmin(dist))
        i, j = sorted((int(center[k]), int(neighbor[k])))
        raise ValueError(f"entry {entry!r}: sites {i} ({s[i].species_string}) and {j} ({s[j].species_string}) "
                         f"overlap, {dist[k]:.3g} Å apart (an atom counted twice?); remove the duplicate or fix "
                         "the coordinates")
    order = np.lexsort((dist, center))
    center, neighbor, images, dist = center[order], neighbor[order], images[order], dist[order]
    counts = np.bincount(center, minlength=len(s))
    if (counts == 0).any():
        i = int(np.flatnonzero(counts == 0)[0])
        raise IsolatedAtomError(f"entry {entry!r}: site {i} ({s[i].species_string}) has no neighbour within the "
                                f"cutoff of {cutoff} Å; increase the cutoff or check the structure")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(center)) - np.repeat(starts, counts)
    keep = rank < max_neighbors
    angles = getattr(model, "reads_angles", False)
    if angles:  # the whole shell of the max_neighbors-th neighbour
        last = dist[starts + np.minimum(counts, max_neighbors) - 1]
        keep = dist <= np.repeat(last, counts) + SHELL_TOLERANCE
    y = torch.full((1, 1), float("nan")) if target is None else torch.as_tensor(
        np.atleast_1d(np.asarray(target, dtype=np.float32)), dtype=torch.float32).reshape(1, -1)
    edge_index = np.stack([neighbor[keep], center[keep]])
    fields = dict(z=torch.as_tensor([site.specie.Z for site in s], dtype=torch.long),
                  edge_index=torch.as_tensor(edge_index, dtype=torch.long),
                  edge_dist=torch.as_tensor(dist[keep], dtype=torch.float32), y=y, num_nodes=len(s))
    if not angles:
        return Data(**fields)
    cart = s.cart_coords
    vectors = cart[neighbor[keep]] + images[keep] @ s.lattice.matrix - cart[center[keep]]
    line_index, cos = line_graph(edge_index, vectors)
    return AngleGraph(**fields, line_index=torch.as_tensor(line_index, dtype=torch.long),
                      angle_cos=torch.as_tensor(cos, dtype=torch.float32))


def build_dataset(structures: Sequence, targets, model: GraphNet | None = None, ids: Sequence | None = None,
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


def graphs_of(table, model: GraphNet | None = None) -> list[Data]:
    """Graphs of a table with ``structure`` and ``target`` columns, such as
    :func:`mlcourse.data.load_transfer_learning` returns, for ``model``: its index names the entries, and
    structures with an isolated atom are left out, named in one warning (:func:`build_dataset` with
    ``skip_isolated=True``)."""
    return build_dataset(table.structure, table.target, model=model, ids=table.index, skip_isolated=True)


def pair_graph(first, second, target=None, model: GraphNet | None = None, entry: object = None) -> Data:
    """Two structures in one graph for ``model`` (no edges between them), for the ``pair`` readouts: the
    nodes of ``first`` then those of ``second``, with ``part`` = 0 or 1 marking which one a node belongs to
    (and, for a model that reads angles, the two line graphs)."""
    a = structure_to_graph(first, target, model, entry)
    b = structure_to_graph(second, target, model, entry)
    fields = dict(z=torch.cat([a.z, b.z]), edge_index=torch.cat([a.edge_index, b.edge_index + a.num_nodes], dim=1),
                  edge_dist=torch.cat([a.edge_dist, b.edge_dist]), y=a.y, num_nodes=a.num_nodes + b.num_nodes,
                  part=torch.cat([torch.zeros(a.num_nodes, dtype=torch.long), torch.ones(b.num_nodes, dtype=torch.long)]))
    if isinstance(a, AngleGraph):
        fields.update(line_index=torch.cat([a.line_index, b.line_index + a.num_edges], dim=1),
                      angle_cos=torch.cat([a.angle_cos, b.angle_cos]))
    g = type(a)(**fields)
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
        # index_select, not x[dst]: the backward of an indexing adds into the atoms' rows from several
        # threads in varying order (two seeded runs of lesson 07 differed by 1e-5); index_select's does not
        pre = (x @ w[:, :h].T).index_select(0, dst) + (x @ w[:, h:2 * h].T).index_select(0, src) + b
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

    def pool(self, model: GraphNet, x: torch.Tensor, index: torch.Tensor, batch) -> torch.Tensor:
        """Crystal vectors (n_graphs, parts × fc_hidden) from atom vectors ``x`` of graphs ``index``."""
        return model._dense(global_mean_pool(x, index, size=batch.num_graphs))


class AttentionReadout(Readout):
    """Attention pooling: a softmax-weighted mean of the atom vectors, weights from a learned gate."""

    def gate(self, hidden: int) -> nn.Module:
        return AttentionalAggregation(nn.Linear(hidden, 1))

    def pool(self, model: GraphNet, x: torch.Tensor, index: torch.Tensor, batch) -> torch.Tensor:
        return model._dense(model.attention(x, index, dim_size=batch.num_graphs))


class PairReadout(Readout):
    """A graph of two structures (:func:`pair_graph`, e.g. the initial and final state of a hop): each
    mean-pooled, their vectors concatenated, with ``difference`` also the second minus the first."""

    def __init__(self, name: str, difference: bool):
        super().__init__(name)
        self.difference = difference
        self.parts = 3 if difference else 2

    def pool(self, model: GraphNet, x: torch.Tensor, index: torch.Tensor, batch) -> torch.Tensor:
        if getattr(batch, "part", None) is None:
            raise ValueError(f"readout {self.name!r} needs pair graphs (gnn.pair_graph), got graphs without 'part'")
        n = batch.num_graphs
        h = model._dense(global_mean_pool(x, 2 * index + batch.part, size=2 * n)).view(n, 2, -1)
        parts = [h[:, 0], h[:, 1]] + ([h[:, 1] - h[:, 0]] if self.difference else [])
        return torch.cat(parts, dim=-1)


# How atom vectors become one crystal vector, by name (CGCNN's ``readout``, :func:`with_readout`).
READOUTS = {r.name: r for r in (Readout("mean"), AttentionReadout("attention"), PairReadout("pair", difference=False),
                                PairReadout("pair_difference", difference=True))}


class GraphNet(nn.Module):
    """What the kit's crystal-graph networks (:class:`CGCNN`, :class:`ALIGNN`) share: a ``config`` (the
    keyword arguments that rebuild it, with ``cutoff`` and ``max_neighbors`` for the graph builders),
    pooling by ``readout`` (a name in :data:`READOUTS`), a linear ``head`` with one output per task, and
    ``y_mean``/``y_std`` (buffers, target units) that turn its normalised outputs back into targets."""

    arch = ""  # the name in MODELS, saved with the weights
    reads_angles = False  # True: the graph builders add the line graph of bond angles (AngleGraph)

    def _start(self, config: dict) -> None:
        if config["readout"] not in READOUTS:
            raise ValueError(f"unknown readout {config['readout']!r}; choose one of {', '.join(READOUTS)}")
        n_tasks, tasks = config["n_tasks"], config["tasks"]
        self.config = {**config, "tasks": list(tasks) if tasks is not None else [f"task{i}" for i in range(n_tasks)]}
        self.pooling = READOUTS[config["readout"]]
        # the Gaussian basis of bond lengths that expand() reads, and the target scaling of every network
        self.register_buffer("centers", torch.linspace(0.0, config["cutoff"], config["n_gaussians"]))
        self.width = config["cutoff"] / (config["n_gaussians"] - 1)
        self.register_buffer("y_mean", torch.zeros(n_tasks))
        self.register_buffer("y_std", torch.ones(n_tasks))

    @property
    def tasks(self) -> list[str]:
        return self.config["tasks"]

    def expand(self, dist: torch.Tensor) -> torch.Tensor:
        """Gaussian expansion of distances (Å) -> (n_edges, n_gaussians)."""
        return torch.exp(-((dist[:, None] - self.centers) / self.width) ** 2)

    def _check_z(self, batch) -> None:
        if int(batch.z.max()) > self.config["max_z"]:
            raise ValueError(f"atomic number {int(batch.z.max())} exceeds max_z={self.config['max_z']}")

    def features(self, batch) -> torch.Tensor:
        """Crystal feature vectors (n_graphs, head_inputs) before the head."""
        x = self.atom_features(batch)
        index = batch.batch if batch.batch is not None else torch.zeros(x.size(0), dtype=torch.long)
        return self.pooling.pool(self, x, index, batch)

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

    def after_pooling(self) -> list[nn.Module]:
        """The layers from pooling on (attention gate, hidden layer, head): trainable in strategy ``conv``."""
        return [m for m in (self.attention, getattr(self, "fc", None), self.head) if m is not None]


class CGCNN(GraphNet):
    """CGCNN: atom embedding, ``n_conv`` CGConv layers (gated, batch-normalised, softplus), pooling
    (``readout``, a name in :data:`READOUTS`), a hidden layer and a linear head with one output per task.

    It reads graphs with edges to the ``max_neighbors`` nearest atoms within ``cutoff`` (Å; the graph
    builders take both from the model), whose distances it expands in ``n_gaussians`` Gaussians on
    [0, cutoff] Å. Outputs are normalised; ``y_mean``/``y_std`` (buffers, target units) turn them back
    into targets (see :func:`predict`).
    """

    arch = "cgcnn"

    def __init__(self, n_tasks: int = 1, hidden: int = 64, n_conv: int = 3, fc_hidden: int = 128,
                 cutoff: float = CUTOFF, max_neighbors: int = MAX_NEIGHBORS, n_gaussians: int = 40, max_z: int = 100,
                 tasks: Sequence[str] | None = None, readout: str = "mean"):
        super().__init__()
        self._start(dict(n_tasks=n_tasks, hidden=hidden, n_conv=n_conv, fc_hidden=fc_hidden, cutoff=cutoff,
                         max_neighbors=max_neighbors, n_gaussians=n_gaussians, max_z=max_z, tasks=tasks, readout=readout))
        self.embedding = nn.Embedding(max_z + 1, hidden)
        self.convs = nn.ModuleList(FactorisedCGConv(hidden, dim=n_gaussians, aggr="add", batch_norm=True) for _ in range(n_conv))
        self.attention = self.pooling.gate(hidden)
        self.fc = nn.Linear(hidden, fc_hidden)
        self.head = nn.Linear(self.head_inputs, n_tasks)

    @property
    def head_inputs(self) -> int:
        """Length of the crystal vector the head reads: fc_hidden per pooled part (3 for pair_difference)."""
        return self.config["fc_hidden"] * self.pooling.parts

    def atom_features(self, batch) -> torch.Tensor:
        """Atom vectors (n_atoms, hidden) after the convolutions."""
        self._check_z(batch)
        x = self.embedding(batch.z)
        e = self.expand(batch.edge_dist)
        for conv in self.convs:
            x = F.softplus(conv(x, batch.edge_index, e))
        return x

    def _dense(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.fc(F.softplus(pooled)))

    def interaction_layers(self, which: Sequence[int] | str | None = None) -> list[nn.Module]:
        """The convolutions strategy ``conv`` unfreezes: those at the indices ``which`` (default: the last)."""
        if isinstance(which, str):
            raise ValueError(f"conv_layers={which!r}: a CGCNN has no separate two- and three-body layers (its "
                             "convolutions all read distances only); choose convolutions by index, e.g. conv_layers=[2]")
        layers = [len(self.convs) - 1] if which is None else list(which)
        for i in layers:
            if not -len(self.convs) <= i < len(self.convs):
                raise ValueError(f"conv layer {i} does not exist; the model has {len(self.convs)}")
        return [self.convs[i] for i in layers]


class EdgeGatedConv(nn.Module):
    """ALIGNN's edge-gated graph convolution (``EdgeGatedGraphConv`` of Choudhary & DeCost, npj Comput.
    Mater. 7, 185 (2021), after Bresson & Laurent, arXiv:1711.07553), on any graph: nodes h, edges e, j → i.

    m_ij = W_src h_j + W_dst h_i + W_e e_ij, σ_ij = sigmoid(m_ij) (an edge gate per feature),
    h_i ← h_i + SiLU(BN(U h_i + Σ_j σ_ij ⊙ V h_j / (Σ_j σ_ij + 10⁻⁶))),  e_ij ← e_ij + SiLU(BN(m_ij)).

    The gates are normalised over the neighbours j of i; the edge update is the gate's pre-activation m.
    Parameter names are ALIGNN's (``alignn/models/alignn.py``): ``src_gate`` W_src, ``dst_gate`` W_dst,
    ``edge_gate`` W_e, ``src_update`` U (which acts on the receiving node i), ``dst_update`` V (on the senders j).
    :func:`edge_gated_conv_teaching` is the same layer in plain loops.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.src_gate = nn.Linear(hidden, hidden)
        self.dst_gate = nn.Linear(hidden, hidden)
        self.edge_gate = nn.Linear(hidden, hidden)
        self.bn_edges = nn.BatchNorm1d(hidden)
        self.src_update = nn.Linear(hidden, hidden)
        self.dst_update = nn.Linear(hidden, hidden)
        self.bn_nodes = nn.BatchNorm1d(hidden)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """New (node, edge) features, shapes of ``h`` (n_nodes, hidden) and ``e`` (n_edges, hidden)."""
        src, dst = edge_index
        # the two linear maps of the senders in one product, gathered once per edge
        sender = F.linear(h, torch.cat([self.src_gate.weight, self.dst_update.weight]),
                          torch.cat([self.src_gate.bias, self.dst_update.bias])).index_select(0, src)
        gate_src, value = sender.chunk(2, dim=-1)
        m = torch.addmm(self.edge_gate.bias, e, self.edge_gate.weight.T).add_(gate_src).add_(
            self.dst_gate(h).index_select(0, dst))
        sigma = torch.sigmoid(m)
        n = h.size(0)
        total = scatter(sigma * value, dst, dim=0, dim_size=n, reduce="sum")
        norm = scatter(sigma, dst, dim=0, dim_size=n, reduce="sum")
        x = self.src_update(h) + total / (norm + 1e-6)
        return h + F.silu(self.bn_nodes(x)), e + F.silu(self.bn_edges(m))


class ALIGNNLayer(nn.Module):
    """One ALIGNN layer: an edge-gated convolution on the atom graph (``node_update``, two-body: atoms and
    bonds), then one on the line graph (``edge_update``, three-body: bonds and bond angles), as in ALIGNN's
    ``ALIGNNConv``. :func:`alignn_layer_teaching` is the same layer in plain loops."""

    def __init__(self, hidden: int):
        super().__init__()
        self.node_update = EdgeGatedConv(hidden)
        self.edge_update = EdgeGatedConv(hidden)

    def forward(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, edge_index: torch.Tensor,
                line_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """New atom ``x``, bond ``y`` and angle ``z`` features."""
        x, m = self.node_update(x, edge_index, y)
        y, z = self.edge_update(m, line_index, z)
        return x, y, z


def _mlp(n_in: int, n_out: int) -> nn.Sequential:
    """ALIGNN's MLPLayer: linear, batch norm, SiLU."""
    return nn.Sequential(nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.SiLU())


class ALIGNN(GraphNet):
    """An ALIGNN-style network (Atomistic Line Graph Neural Network; Choudhary & DeCost, npj Comput. Mater.
    7, 185 (2021)), the network of Devi et al. (2024), written here on torch-geometric: the ``alignn``
    package needs DGL, which has no build for the kit's torch.

    Atoms (an embedding of Z), bonds (their distance in ``n_gaussians`` Gaussians on [0, cutoff] Å, two
    MLP layers) and bond angles (cos θ in ``n_angle_bins`` Gaussians on [−1, 1], two MLP layers) pass
    through ``n_alignn`` :class:`ALIGNNLayer` (atom graph, then line graph), then ``n_gcn`` edge-gated
    layers on the atom graph alone, then pooling (``readout``, a name in :data:`READOUTS`) and a linear
    head, as ALIGNN's AvgPooling and ``fc``. It reads :class:`AngleGraph`s: build them with ``model=`` this
    network (:func:`build_dataset`), which takes ``cutoff`` and ``max_neighbors`` from it.

    Differences from the published network: learned atom embeddings instead of CGCNN's 92 atom
    features; the Gaussian width is the spacing of the centres; the defaults are small for a laptop CPU
    (hidden 64, 2 + 2 layers, against 256 and 4 + 4); edges are not symmetrised (an atom receives edges
    from its neighbour shell, see :func:`structure_to_graph`).
    """

    arch = "alignn"
    reads_angles = True

    def __init__(self, n_tasks: int = 1, hidden: int = 64, n_alignn: int = 2, n_gcn: int = 2, cutoff: float = CUTOFF,
                 max_neighbors: int = MAX_NEIGHBORS, n_gaussians: int = 40, n_angle_bins: int = 20, max_z: int = 100,
                 tasks: Sequence[str] | None = None, readout: str = "mean"):
        super().__init__()
        self._start(dict(n_tasks=n_tasks, hidden=hidden, n_alignn=n_alignn, n_gcn=n_gcn, cutoff=cutoff,
                         max_neighbors=max_neighbors, n_gaussians=n_gaussians, n_angle_bins=n_angle_bins, max_z=max_z,
                         tasks=tasks, readout=readout))
        self.embedding = nn.Embedding(max_z + 1, hidden)
        self.register_buffer("angle_centers", torch.linspace(-1.0, 1.0, n_angle_bins))
        self.angle_width = 2.0 / (n_angle_bins - 1)
        self.bond_embedding = nn.Sequential(_mlp(n_gaussians, hidden), _mlp(hidden, hidden))
        self.angle_embedding = nn.Sequential(_mlp(n_angle_bins, hidden), _mlp(hidden, hidden))
        self.alignn_layers = nn.ModuleList(ALIGNNLayer(hidden) for _ in range(n_alignn))
        self.gcn_layers = nn.ModuleList(EdgeGatedConv(hidden) for _ in range(n_gcn))
        self.attention = self.pooling.gate(hidden)
        self.head = nn.Linear(self.head_inputs, n_tasks)

    @property
    def head_inputs(self) -> int:
        """Length of the crystal vector the head reads: hidden per pooled part (3 for pair_difference)."""
        return self.config["hidden"] * self.pooling.parts

    def expand_angle(self, cos: torch.Tensor) -> torch.Tensor:
        """Gaussian expansion of cos θ -> (n_triplets, n_angle_bins)."""
        return torch.exp(-((cos[:, None] - self.angle_centers) / self.angle_width) ** 2)

    def embed(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Initial atom, bond and angle features (each ``hidden`` wide)."""
        self._check_z(batch)
        if getattr(batch, "line_index", None) is None:
            raise ValueError("an ALIGNN reads graphs with bond angles (gnn.AngleGraph); these have none: build them "
                             "with model= this network, e.g. gnn.build_dataset(structures, targets, model=model)")
        return (self.embedding(batch.z), self.bond_embedding(self.expand(batch.edge_dist)),
                self.angle_embedding(self.expand_angle(batch.angle_cos)))

    def atom_features(self, batch) -> torch.Tensor:
        """Atom vectors (n_atoms, hidden) after the ALIGNN and edge-gated layers."""
        x, y, z = self.embed(batch)
        for layer in self.alignn_layers:
            x, y, z = layer(x, y, z, batch.edge_index, batch.line_index)
        for conv in self.gcn_layers:
            x, y = conv(x, batch.edge_index, y)
        return x

    def _dense(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled  # ALIGNN's head reads the pooled atom vectors directly

    def interaction_layers(self, which: Sequence[int] | str | None = None) -> list[nn.Module]:
        """The layers strategy ``conv`` unfreezes, as in Devi et al.'s ``2b-3b-freeze.py``
        (github.com/sai-mat-group/transfer-learning-material-properties): ``"2-body"``, the atom-graph
        convolutions (every ALIGNN layer's ``node_update`` and the edge-gated layers after them), or
        ``"3-body"``, the line-graph convolutions (every ALIGNN layer's ``edge_update``)."""
        if which == "2-body":
            return [layer.node_update for layer in self.alignn_layers] + list(self.gcn_layers)
        if which == "3-body":
            return [layer.edge_update for layer in self.alignn_layers]
        raise ValueError(f"conv_layers={which!r}: strategy 'conv' on an ALIGNN unfreezes its two- or three-body "
                         "interaction layers; give conv_layers='2-body' (atom graph) or '3-body' (line graph)")


# The networks by name (``arch`` of :func:`seeded_model`, saved with the weights by :func:`save_model`).
MODELS = {m.arch: m for m in (CGCNN, ALIGNN)}


def seeded_model(seed: int, arch: str = "cgcnn", **kwargs) -> GraphNet:
    """``MODELS[arch](**kwargs)`` (a :class:`CGCNN` or an :class:`ALIGNN`) with weights drawn from ``seed``;
    torch's global random state is left as it was."""
    if arch not in MODELS:
        raise ValueError(f"unknown network {arch!r}; choose one of {', '.join(MODELS)}")
    with torch_seeded(seed):
        return MODELS[arch](**kwargs)


def with_readout(pretrained: GraphNet, readout: str, n_tasks: int = 1, seed: int = 0) -> GraphNet:
    """A new network of ``pretrained``'s kind with another readout (a name in :data:`READOUTS`) that starts
    from ``pretrained``'s layers up to pooling (and CGCNN's hidden layer); the head (and the attention gate)
    are freshly initialised from ``seed``. Fine-tune it next."""
    model = seeded_model(seed, pretrained.arch, **{**pretrained.config, "readout": readout, "n_tasks": n_tasks, "tasks": None})
    # not the Gaussian centres: the new network's own come from the config (a half-precision file rounds them)
    shared = {k: v for k, v in pretrained.state_dict().items()
              if k.split(".")[0] not in ("head", "attention", "y_mean", "y_std", "centers", "angle_centers")}
    model.load_state_dict(shared, strict=False)
    return model


def attention_weights(model: GraphNet, graph: Data) -> np.ndarray:
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


def edge_gated_conv_teaching(conv: EdgeGatedConv, h: torch.Tensor, edge_index: torch.Tensor,
                             e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teaching version of :class:`EdgeGatedConv` with the layer's own weights, one edge at a time."""
    gated_sum = [torch.zeros(h.size(1)) for _ in range(h.size(0))]  # Σ_j σ_ij ⊙ V h_j, per node i
    gate_sum = [torch.zeros(h.size(1)) for _ in range(h.size(0))]  # Σ_j σ_ij
    m = []
    for k in range(edge_index.size(1)):
        j, i = int(edge_index[0, k]), int(edge_index[1, k])  # edge k carries a message j → i
        m_ij = conv.src_gate(h[j]) + conv.dst_gate(h[i]) + conv.edge_gate(e[k])
        sigma = torch.sigmoid(m_ij)
        gated_sum[i] = gated_sum[i] + sigma * conv.dst_update(h[j])
        gate_sum[i] = gate_sum[i] + sigma
        m.append(m_ij)
    x = torch.stack([conv.src_update(h[i]) + gated_sum[i] / (gate_sum[i] + 1e-6) for i in range(h.size(0))])
    return h + F.silu(conv.bn_nodes(x)), e + F.silu(conv.bn_edges(torch.stack(m)))


def alignn_layer_teaching(layer: ALIGNNLayer, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, edge_index: torch.Tensor,
                          line_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teaching version of one :class:`ALIGNNLayer`: the edge-gated update of atoms x and bonds y, edge by
    edge on the atom graph (two-body), then of bonds and angles z, triplet by triplet on the line graph
    (three-body: the bonds are its nodes, the angles its edges)."""
    x, m = edge_gated_conv_teaching(layer.node_update, x, edge_index, y)
    y, z = edge_gated_conv_teaching(layer.edge_update, m, line_index, z)
    return x, y, z


# --------------------------------------------------------------------------- training


def masked_l1(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L = (1/N) Σ |y_p − y_t| δ with δ = 1 where the property exists (not NaN); N = number of such entries."""
    mask = ~torch.isnan(y)
    if not mask.any():
        return pred.sum() * 0.0
    return (pred[mask] - y[mask]).abs().mean()


def _set_normaliser(model: GraphNet, dataset: Sequence[Data]) -> None:
    y = _targets(dataset)
    mean = np.nanmean(y, axis=0)
    std = np.nanstd(y, axis=0)
    std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)
    model.y_mean = torch.as_tensor(np.nan_to_num(mean), dtype=torch.float32)
    model.y_std = torch.as_tensor(std, dtype=torch.float32)


def _frozen_bn_to_eval(model: GraphNet) -> None:
    """Batch-norm layers whose weights are frozen keep their pre-trained running statistics."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def _val_mae(model: GraphNet, loader) -> float:
    model.eval()
    errs, n = 0.0, 0
    with torch.no_grad():
        for b in loader:
            y = (b.y - model.y_mean) / model.y_std
            mask = ~torch.isnan(y)
            errs += float((model(b)[mask] - y[mask]).abs().sum())
            n += int(mask.sum())
    return errs / max(n, 1)


def fit(model: GraphNet, train: Sequence[Data], val: Sequence[Data] | None = None, epochs: int = 100,
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
                       model_kwargs: dict | None = None, **fit_kwargs) -> tuple[GraphNet, training.History]:
    """A new network trained on ``dataset`` (``val_fraction`` of it held out for early stopping).

    ``model_kwargs`` go to :func:`seeded_model`: a CGCNN's sizes (hidden, n_conv, ...), or ``arch="alignn"``
    and an ALIGNN's (build the graphs for that ALIGNN); the rest go to :func:`fit`. Predictions come out in
    the targets' unit.
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
             model_kwargs: dict | None = None, **fit_kwargs) -> tuple[GraphNet, training.History]:
    """Pre-train on one property (a dataset) or several (a dict name -> dataset: multi-property
    pre-training with one head output per property and the masked L1 loss :func:`masked_l1`).
    ``model_kwargs`` as in :func:`train_from_scratch`."""
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


def prepare_fine_tune(pretrained: GraphNet, strategy: str = "all", n_tasks: int = 1,
                      conv_layers: Sequence[int] | str | None = None, seed: int = 0) -> GraphNet:
    """A copy of ``pretrained`` set up for one of the four FT strategies of Devi et al. (2024):

    - ``"all"``: every layer trainable, the pre-trained head kept; ValueError if it does not fit (a
      multi-property model, or another number of targets): use ``"new_head"`` then;
    - ``"new_head"``: a freshly initialised prediction head, every layer trainable (how Devi et al.
      fine-tune their multi-property model on a new property);
    - ``"last_layer"``: only the prediction head trainable;
    - ``"conv"``: only selected interaction layers, ``conv_layers``, plus the layers after pooling
      trainable; embeddings and the other interaction layers frozen. A CGCNN's are its convolutions by
      index (default: the last); an ALIGNN's are ``"2-body"`` (the atom-graph convolutions) or ``"3-body"``
      (the line-graph convolutions), the paper's strategy 4 (see :meth:`ALIGNN.interaction_layers`).

    ``last_layer`` and ``conv`` train a new head when the pre-trained one does not fit. New heads are drawn
    from ``seed`` (torch's global random state is left as it was). Frozen batch norms keep their statistics.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown fine-tuning strategy {strategy!r}; choose one of {STRATEGIES}")
    fits = pretrained.config["n_tasks"] == n_tasks
    if strategy == "all" and not fits:
        raise ValueError(f"strategy 'all' keeps the pre-trained head, but it has {pretrained.config['n_tasks']} "
                         f"output(s) ({', '.join(pretrained.tasks)}) and the fine-tuning data {n_tasks} target "
                         "column(s); use strategy 'new_head' (a new head, every layer trainable)")
    model = copy.deepcopy(pretrained)
    if strategy == "new_head" or not fits:
        with torch_seeded(seed):
            model.replace_head(n_tasks)
    for p in model.parameters():
        p.requires_grad = strategy in ("all", "new_head")
    if strategy == "last_layer":
        for p in model.head.parameters():
            p.requires_grad = True
    if strategy == "conv":
        for layer in model.interaction_layers(conv_layers) + model.after_pooling():
            for p in layer.parameters():
                p.requires_grad = True
    elif conv_layers is not None:
        raise ValueError(f"conv_layers={conv_layers!r} is for strategy 'conv', not {strategy!r}")
    return model


def fine_tune(pretrained: GraphNet, dataset: Sequence[Data], strategy: str = "all",
              conv_layers: Sequence[int] | str | None = None, val_fraction: float = 0.1, seed: int = 0,
              **fit_kwargs) -> tuple[GraphNet, training.History]:
    """Fine-tune a copy of ``pretrained`` on ``dataset`` with a named strategy (see :func:`prepare_fine_tune`).

    The pre-trained model is left unchanged; the target normaliser is refitted on the FT data.
    """
    train, val = split_dataset(dataset, val_fraction, seed)
    model = prepare_fine_tune(pretrained, strategy, train[0].y.shape[-1], conv_layers, seed)
    return model, fit(model, train, val, seed=seed, **fit_kwargs)


# --------------------------------------------------------------------------- prediction and evaluation


def predict(model: GraphNet, dataset: Sequence[Data], batch_size: int = 64) -> np.ndarray:
    """Batched predictions in the targets' unit: shape (n,) for one task, (n, n_tasks) otherwise.

    ``batch_size`` bounds the memory: an ALIGNN batch of 256 crystals with ~1,300 bond angles each holds
    ~40 MB per layer's angle features (predictions do not depend on it, up to rounding)."""
    model.eval()
    out = []
    with torch.no_grad():
        for b in DataLoader(list(dataset), batch_size=batch_size):
            out.append(model(b) * model.y_std + model.y_mean)
    pred = torch.cat(out).numpy().astype(float)
    return pred[:, 0] if pred.shape[1] == 1 else pred


def evaluate(model: GraphNet, dataset: Sequence[Data], task: int = 0, prop: str | None = None) -> dict:
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


def save_model(model: GraphNet, path: str | Path, half: bool = False) -> Path:
    """Save the kind of network (``arch``), config and weights (``half``: store float tensors in float16 to
    halve the file)."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"arch": model.arch, "config": model.config, "state_dict": state}, path)
    return path


def load_model(path: str | Path) -> GraphNet:
    """A network saved by :func:`save_model` (loaded with ``weights_only=True``), in eval mode; files without
    ``arch`` (saved before ALIGNN was added) hold a CGCNN."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = MODELS[ckpt.get("arch", "cgcnn")](**ckpt["config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    return model.eval()
