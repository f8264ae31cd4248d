"""mlcourse.gnn: crystal graphs, CGCNN, training, transfer-learning strategies, on tiny datasets."""

import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch
from torch_geometric.nn import CGConv, global_mean_pool

from mlcourse import data, gnn

torch.set_num_threads(1)
# the tests' graphs are smaller than the default (8 Å, 12 neighbours); the builders read them from this model
SMALL = gnn.seeded_model(0, cutoff=6.0, max_neighbors=8)


def rocksalt(a: float, cation: str = "Na", anion: str = "Cl") -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def rocksalt_primitive(a: float, cation: str = "Na", anion: str = "Cl") -> Structure:
    """``rocksalt(a, cation, anion).get_primitive_structure()`` (same vectors and site order, to 1e-16), built
    directly: pymatgen's search takes 0.5 CPU-s a crystal."""
    h = a / 2
    return Structure(Lattice([[-h, -h, 0], [-h, 0, -h], [0, -h, -h]]), [anion, cation], [[0.5, 0.5, 0.5], [0, 0, 0]])


def tiny_set(n: int = 24, seed: int = 0):
    """Rock-salt crystals whose 'energy' (eV) falls with the lattice constant and depends on the cation."""
    rng = np.random.default_rng(seed)
    cations = ["Na", "K", "Li"]
    structures, targets = [], []
    for i in range(n):
        a = rng.uniform(4.6, 6.2)
        c = cations[i % 3]
        structures.append(rocksalt_primitive(a, c))
        targets.append(-0.8 * a + {"Na": 0.0, "K": 0.6, "Li": -0.6}[c])
    return structures, np.array(targets)


@pytest.fixture(scope="module")
def graphs():
    s, y = tiny_set()
    return gnn.build_dataset(s, y, model=SMALL)


# ------------------------------------------------------------------ graphs


def test_graph_has_the_nearest_neighbours_with_periodic_images():
    s = Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])  # simple cubic, one atom: all neighbours are images
    g = gnn.structure_to_graph(s, 1.0, model=gnn.CGCNN(cutoff=4.5, max_neighbors=12))
    d = np.sort(g.edge_dist.numpy())
    assert g.num_nodes == 1 and g.num_edges == 12
    assert np.allclose(d[:6], 3.0) and np.allclose(d[6:], 3.0 * math.sqrt(2))  # 6 at a, then 6 of the 12 at a√2
    assert (g.edge_index == 0).all() and g.z.tolist() == [29] and g.y.shape == (1, 1)


def test_graph_builders_read_the_cutoff_and_neighbour_count_of_the_model():
    s = Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])  # neighbours: 6 at 3 Å, 12 at 4.24 Å, 8 at 5.20 Å
    assert gnn.structure_to_graph(s, model=gnn.CGCNN(cutoff=4.0, max_neighbors=12)).num_edges == 6
    assert gnn.structure_to_graph(s, model=gnn.CGCNN(cutoff=6.0, max_neighbors=9)).num_edges == 9
    short = gnn.CGCNN(cutoff=3.5, max_neighbors=12)
    [g] = gnn.build_dataset([s], [1.0], model=short)
    pair = gnn.pair_graph(s, s, 1.0, model=short)
    assert g.num_edges == 6 and pair.num_edges == 12 and float(pair.edge_dist.max()) == pytest.approx(3.0)
    # without a model: the defaults of CGCNN(), which it stores and saves with its weights
    assert gnn.graph_settings() == gnn.graph_settings(gnn.CGCNN()) == (gnn.CUTOFF, gnn.MAX_NEIGHBORS) == (8.0, 12)
    assert gnn.structure_to_graph(s).num_edges == 12
    assert gnn.graph_settings(SMALL) == (6.0, 8) and SMALL.centers.max().item() == pytest.approx(6.0)


def test_registered_checkpoints_load_with_the_default_neighbour_count():
    """data/transfer_learning/*.pt were saved before the model stored max_neighbors: they keep loading
    (strictly, every state-dict key) and read graphs of the neighbour count they were trained on."""
    for name in ("pt_fe", "mpt_no_ebg"):
        model = gnn.load_model(data.fetch(f"transfer_learning/{name}.pt"))
        assert gnn.graph_settings(model) == (8.0, 12), name
        assert "max_neighbors" not in torch.load(data.fetch(f"transfer_learning/{name}.pt"), weights_only=True)["config"]


def test_build_dataset_accepts_ase_and_jarvis_dicts():
    s = rocksalt(5.6).get_primitive_structure()
    from pymatgen.io.ase import AseAtomsAdaptor

    jarvis = {"lattice_mat": s.lattice.matrix.tolist(), "coords": s.frac_coords.tolist(),
              "elements": [x.specie.symbol for x in s], "cartesian": False}
    a, b, c = gnn.build_dataset([s, AseAtomsAdaptor.get_atoms(s), jarvis], [1.0, 2.0, 3.0], model=SMALL)
    assert torch.allclose(a.edge_dist.sort().values, b.edge_dist.sort().values, atol=1e-5)
    assert torch.allclose(a.edge_dist.sort().values, c.edge_dist.sort().values, atol=1e-5)
    assert [g.entry for g in (a, b, c)] == ["0", "1", "2"]


def test_isolated_atom_raises_naming_entry_and_site_or_is_skipped_with_warning():
    lonely = Structure(Lattice.cubic(20.0), ["Er", "S"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    ok = rocksalt(5.6).get_primitive_structure()
    with pytest.raises(gnn.IsolatedAtomError, match=r"entry 'bad-1': site 0 \(Er\) has no neighbour within the cutoff of 8.0"):
        gnn.build_dataset([ok, lonely], [1.0, 2.0], ids=["good", "bad-1"])
    with pytest.warns(UserWarning, match="bad-1"):
        kept = gnn.build_dataset([ok, lonely], [1.0, 2.0], ids=["good", "bad-1"], skip_isolated=True)
    assert [g.entry for g in kept] == ["good"]
    assert issubclass(gnn.IsolatedAtomError, ValueError)  # callers that catch ValueError still do


def test_graphs_of_a_table_use_its_index_and_name_what_they_leave_out():
    import pandas as pd

    lonely = Structure(Lattice.cubic(20.0), ["Er", "S"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    ok = rocksalt(5.6).get_primitive_structure()
    table = pd.DataFrame({"structure": [ok, lonely, ok], "target": [1.0, 2.0, 3.0]}, index=["a", "lonely-1", "c"])
    with pytest.warns(UserWarning, match="lonely-1"):
        kept = gnn.graphs_of(table, model=SMALL)
    assert [g.entry for g in kept] == ["a", "c"]
    assert [float(g.y[0, 0]) for g in kept] == [1.0, 3.0]
    one = gnn.build_dataset([ok], [1.0], model=SMALL)[0]
    assert torch.equal(kept[0].edge_dist, one.edge_dist)  # the model's cutoff and neighbours, as build_dataset


def test_skip_isolated_leaves_out_isolated_atoms_only():
    """skip_isolated catches IsolatedAtomError, not other ValueErrors: overlapping atoms still raise."""
    overlap = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0, 0, 0.0001]])
    ok = rocksalt(5.6).get_primitive_structure()
    with pytest.raises(ValueError, match="overlap") as info:
        gnn.build_dataset([ok, overlap], [1.0, 2.0], ids=["good", "twice"], skip_isolated=True)
    assert not isinstance(info.value, gnn.IsolatedAtomError)


def test_nan_target_raises_naming_entry():
    s, y = tiny_set(4)
    y[2] = np.nan
    with pytest.raises(ValueError, match="NaN.*'c'"):
        gnn.build_dataset(s, y, ids=list("abcd"))


def test_multi_property_missing_values_allowed_only_with_flag_and_never_all_missing():
    s, _ = tiny_set(3)
    y = np.array([[1.0, np.nan], [np.nan, 2.0], [np.nan, np.nan]])
    with pytest.raises(ValueError, match="entries 2"):
        gnn.build_dataset(s, y, allow_missing=True)
    g = gnn.build_dataset(s[:2], y[:2], allow_missing=True)
    assert torch.isnan(g[0].y[0, 1]) and g[1].y[0, 1] == 2.0


def test_bad_inputs_are_named():
    s, y = tiny_set(3)
    with pytest.raises(ValueError, match="3 structures but 2 targets"):
        gnn.build_dataset(s, y[:2])
    with pytest.raises(TypeError, match="entry 1: expected a pymatgen Structure"):
        gnn.build_dataset([s[0], "NaCl"], [1.0, 2.0])
    with pytest.raises(ValueError, match="empty dataset"):
        gnn.build_dataset([], [])


def test_single_element_split_raises(graphs):
    with pytest.raises(ValueError, match="cannot split 1 graph"):
        gnn.split_dataset(graphs[:1])
    with pytest.raises(ValueError, match="cannot split 1 graph"):
        gnn.train_from_scratch(graphs[:1], epochs=1, progress=False)
    with pytest.raises(ValueError, match="cannot split 1 graph"):
        gnn.fine_tune(gnn.CGCNN(), graphs[:1], epochs=1, progress=False)


# ------------------------------------------------------------------ layers agree with the library


def test_factorised_and_teaching_convolutions_agree_with_pyg_cgconv(graphs):
    torch.manual_seed(0)
    b = Batch.from_data_list(graphs[:5])
    ref = CGConv(16, dim=40, aggr="add", batch_norm=True).eval()
    with torch.no_grad():
        ref.bn.running_mean.uniform_(-0.5, 0.5)
        ref.bn.running_var.uniform_(0.5, 2.0)
    fast = gnn.FactorisedCGConv(16, dim=40, aggr="add", batch_norm=True).eval()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(b.num_nodes, 16)
    e = gnn.CGCNN().expand(b.edge_dist)
    with torch.no_grad():
        want = ref(x, b.edge_index, e)
        assert torch.allclose(fast(x, b.edge_index, e), want, atol=1e-5)
        assert torch.allclose(gnn.cgconv_teaching(ref, x, b.edge_index, e), want, atol=1e-5)
        assert torch.allclose(gnn.mean_pool_teaching(x, b.batch, b.num_graphs), global_mean_pool(x, b.batch), atol=1e-6)
    # training path: the same gradients too
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    for conv, xi in zip((ref, fast), xs):
        conv(xi, b.edge_index, e).square().sum().backward()
    assert torch.allclose(xs[0].grad, xs[1].grad, atol=1e-4)
    for (name, p_ref), p_fast in zip(ref.named_parameters(), fast.parameters()):
        assert torch.allclose(p_ref.grad, p_fast.grad, atol=1e-3, rtol=1e-4), name


def test_gaussian_expansion_peaks_at_the_distance():
    m = gnn.CGCNN(cutoff=8.0, n_gaussians=41)
    e = m.expand(torch.tensor([2.0]))
    assert e.shape == (1, 41) and int(e.argmax()) == 10 and float(e.max()) == pytest.approx(1.0)


# ------------------------------------------------------------------ training, prediction, checkpoints


def test_training_learns_and_is_deterministic(graphs, tmp_path):
    kw = dict(epochs=40, lr=5e-3, batch_size=8, patience=40, progress=False, model_kwargs={"hidden": 16, "fc_hidden": 16})
    m1, h1 = gnn.train_from_scratch(graphs, **kw)
    m2, _ = gnn.train_from_scratch(graphs, **kw)
    p1, p2 = gnn.predict(m1, graphs), gnn.predict(m2, graphs)
    assert np.array_equal(p1, p2)  # same seed, same model
    assert h1.val_metric[h1.best_epoch] < 0.5 * h1.val_metric[0]
    y = np.array([g.y.item() for g in graphs])
    assert gnn.evaluate(m1, graphs)["mae"] < 0.5 * np.mean(np.abs(y - y.mean()))  # beats predicting the mean
    loaded = gnn.load_model(gnn.save_model(m1, tmp_path / "m.pt"))
    assert np.allclose(gnn.predict(loaded, graphs), p1, atol=1e-6) and loaded.config == m1.config


def test_fit_resumes_from_its_checkpoint(graphs, tmp_path):
    kw = dict(lr=5e-3, batch_size=8, patience=40, progress=False, model_kwargs={"hidden": 16, "fc_hidden": 16})
    m1, h1 = gnn.train_from_scratch(graphs, epochs=6, **kw)
    _, h = gnn.train_from_scratch(graphs, epochs=3, checkpoint=tmp_path / "state.pt", **kw)  # stopped after 3 epochs
    assert len(h.train_loss) == 3
    m2, h2 = gnn.train_from_scratch(graphs, epochs=6, checkpoint=tmp_path / "state.pt", **kw)  # goes on to 6
    assert h2.train_loss == h1.train_loss and h2.val_metric == h1.val_metric and h2.best_epoch == h1.best_epoch
    assert np.array_equal(gnn.predict(m2, graphs), gnn.predict(m1, graphs))


def test_a_network_built_under_float64_trains_in_float64_on_the_float32_graphs(graphs):
    """Lesson 05 trains in float64 so that its fit does not depend on the CPU (its toml's torch note): the
    weights, the forward pass and the predictions stay float64, and the thread count changes nothing."""
    kw = dict(epochs=8, lr=5e-3, batch_size=8, patience=40, progress=False, model_kwargs={"hidden": 16, "fc_hidden": 16})
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        m1, _ = gnn.train_from_scratch(graphs, **kw)
        torch.set_num_threads(2)
        m2, _ = gnn.train_from_scratch(graphs, **kw)
    finally:
        torch.set_num_threads(1)
        torch.set_default_dtype(previous)
    assert graphs[0].edge_dist.dtype == torch.float32
    assert all(p.dtype == torch.float64 for p in m1.parameters())
    with torch.no_grad():
        assert m1(Batch.from_data_list(graphs)).dtype == torch.float64
    p1, p2 = gnn.predict(m1, graphs), gnn.predict(m2, graphs)
    assert not np.array_equal(p1, p1.astype(np.float32).astype(float))  # not rounded to float32 on the way
    np.testing.assert_allclose(p2, p1, rtol=1e-12, atol=0)


def test_half_precision_checkpoint_is_small_and_close(graphs, tmp_path):
    m = gnn.CGCNN()
    gnn.save_model(m, tmp_path / "f.pt")
    gnn.save_model(m, tmp_path / "h.pt", half=True)
    assert (tmp_path / "h.pt").stat().st_size < 0.6 * (tmp_path / "f.pt").stat().st_size
    assert np.allclose(gnn.predict(gnn.load_model(tmp_path / "h.pt"), graphs), gnn.predict(m, graphs), atol=1e-2)


def test_masked_loss_ignores_missing_properties():
    pred = torch.tensor([[1.0, 5.0], [2.0, 0.0]])
    y = torch.tensor([[0.0, float("nan")], [2.0, 3.0]])
    assert gnn.masked_l1(pred, y).item() == pytest.approx((1 + 0 + 3) / 3)


def test_evaluate_in_physical_units():
    assert data.to_physical("bg", [-1.0, 1.0]) == pytest.approx([0.0, 9.7212])
    with pytest.raises(KeyError, match="dc"):
        data.to_physical("dc", [0.0])


# ------------------------------------------------------------------ transfer learning


@pytest.fixture(scope="module")
def pretrained(graphs):
    m, _ = gnn.pretrain(graphs, epochs=5, progress=False, model_kwargs={"hidden": 16, "fc_hidden": 16})
    return m


@pytest.mark.parametrize("strategy", gnn.STRATEGIES)
def test_fine_tune_strategies_train_only_their_layers(pretrained, graphs, strategy):
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    model, hist = gnn.fine_tune(pretrained, graphs, strategy=strategy, epochs=3, progress=False)
    assert all(torch.equal(before[k], v) for k, v in pretrained.state_dict().items()), "pre-trained model changed"
    after = model.state_dict()
    changed = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("convs") else "")
               for k in after if k in before and not k.startswith(("y_", "centers")) and not torch.equal(before[k], after[k])}
    expected = {
        "all": {"embedding", "convs.0", "convs.1", "convs.2", "fc", "head"},
        "new_head": {"embedding", "convs.0", "convs.1", "convs.2", "fc", "head"},
        "last_layer": {"head"},
        "conv": {"convs.2", "fc", "head"},
    }[strategy]
    assert changed == expected
    assert 1 <= len(hist.train_loss) == len(hist.val_metric) <= 3 and 0 <= hist.best_epoch < len(hist.train_loss)
    assert hist.val_metric[hist.best_epoch] == min(hist.val_metric)  # the state kept is the best one


def test_new_head_is_reinitialised_and_bad_strategy_or_layer_raises(pretrained):
    m = gnn.prepare_fine_tune(pretrained, "new_head")
    assert not torch.equal(m.head.weight, pretrained.head.weight)
    assert torch.equal(gnn.prepare_fine_tune(pretrained, "all").head.weight, pretrained.head.weight)
    with pytest.raises(ValueError, match="unknown fine-tuning strategy 'freeze'"):
        gnn.prepare_fine_tune(pretrained, "freeze")
    with pytest.raises(ValueError, match="conv layer 7 does not exist"):
        gnn.prepare_fine_tune(pretrained, "conv", conv_layers=[7])


def test_multi_property_pretraining_has_one_head_per_property_and_fine_tunes(graphs):
    sets = {"a": graphs[:12], "b": graphs[12:]}
    m, _ = gnn.pretrain(sets, epochs=2, progress=False, model_kwargs={"hidden": 16, "fc_hidden": 16})
    assert m.tasks == ["a", "b"] and gnn.predict(m, graphs).shape == (len(graphs), 2)
    merged = gnn.multi_property_dataset(sets)
    assert torch.isnan(merged[0].y[0, 1]) and not torch.isnan(merged[0].y[0, 0])
    ft, _ = gnn.fine_tune(m, graphs, "new_head", epochs=1, progress=False)
    assert ft.config["n_tasks"] == 1 and gnn.predict(ft, graphs).shape == (len(graphs),)


def test_each_strategy_means_its_name_on_a_multi_head_model(graphs):
    """'all' keeps the pre-trained head: a two-head model has none that fits one target, so it raises naming
    the strategy that does what it used to do silently; the others train a new one-output head."""
    m, _ = gnn.pretrain({"a": graphs[:12], "b": graphs[12:]}, epochs=1, progress=False,
                        model_kwargs={"hidden": 16, "fc_hidden": 16})
    with pytest.raises(ValueError, match=r"'all' keeps the pre-trained head, but it has 2 output\(s\) \(a, b\) .*"
                                         r"use strategy 'new_head'"):
        gnn.fine_tune(m, graphs, "all", epochs=1, progress=False)
    for strategy in ("new_head", "last_layer", "conv"):
        ft = gnn.prepare_fine_tune(m, strategy, seed=1)
        assert ft.config["n_tasks"] == 1 and ft.head.out_features == 1, strategy
        trainable = {k.split(".")[0] for k, p in ft.named_parameters() if p.requires_grad}
        assert trainable == {"new_head": {"embedding", "convs", "fc", "head"}, "last_layer": {"head"},
                             "conv": {"convs", "fc", "head"}}[strategy]
    assert torch.equal(gnn.prepare_fine_tune(m, "new_head", seed=1).head.weight,
                       gnn.prepare_fine_tune(m, "last_layer", seed=1).head.weight)  # the same new head
    # a one-head model keeps its head under 'all'
    single = gnn.prepare_fine_tune(m, "new_head")
    assert torch.equal(gnn.prepare_fine_tune(single, "all").head.weight, single.head.weight)


# ------------------------------------------------------------------ readouts (input designs)


def test_with_readout_keeps_the_pretrained_layers_and_builds_a_new_head(pretrained):
    for readout in gnn.READOUTS:
        m = gnn.with_readout(pretrained, readout)
        assert m.config["readout"] == readout and m.head.in_features == m.head_inputs
        for name in ("embedding.weight", "convs.2.lin_f.weight", "convs.2.bn.running_mean", "fc.weight"):
            assert torch.equal(m.state_dict()[name], pretrained.state_dict()[name]), name
    assert gnn.with_readout(pretrained, "pair_difference").head.in_features == 3 * pretrained.config["fc_hidden"]
    again = gnn.with_readout(pretrained, "attention", seed=3), gnn.with_readout(pretrained, "attention", seed=3)
    assert torch.equal(again[0].head.weight, again[1].head.weight)
    assert torch.equal(again[0].attention.gate_nn.weight, again[1].attention.gate_nn.weight)
    with pytest.raises(ValueError, match="unknown readout 'max'; choose one of mean, attention, pair, pair_difference"):
        gnn.CGCNN(readout="max")
    with pytest.raises(ValueError, match="unknown readout 'sum'; choose one of mean, attention"):
        gnn.with_readout(pretrained, "sum")


def test_readout_registry_knows_each_poolings_head_size_and_gate():
    assert list(gnn.READOUTS) == ["mean", "attention", "pair", "pair_difference"]
    assert [r.parts for r in gnn.READOUTS.values()] == [1, 1, 2, 3]
    for name, readout in gnn.READOUTS.items():
        m = gnn.CGCNN(hidden=8, fc_hidden=5, readout=name)
        assert m.pooling is readout and m.head_inputs == 5 * readout.parts == m.head.in_features
        assert (m.attention is not None) == (name == "attention")
        # the state-dict keys of saved models stay the same: the attention gate is still "attention.*"
        assert any(k.startswith("attention.") for k in m.state_dict()) == (name == "attention")


def test_seeded_builders_leave_torch_global_random_state_alone(pretrained):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = gnn.seeded_model(5, hidden=8, fc_hidden=8)
    b = gnn.with_readout(pretrained, "attention", seed=5)
    c = gnn.prepare_fine_tune(pretrained, "new_head", seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.head.weight, gnn.seeded_model(5, hidden=8, fc_hidden=8).head.weight)  # still seeded
    assert torch.equal(b.head.weight, gnn.with_readout(pretrained, "attention", seed=5).head.weight)
    assert torch.equal(c.head.weight, gnn.prepare_fine_tune(pretrained, "new_head", seed=5).head.weight)


def test_attention_pooling_with_a_constant_gate_is_mean_pooling(pretrained, graphs):
    att = gnn.with_readout(pretrained, "attention").eval()
    torch.nn.init.zeros_(att.attention.gate_nn.weight)  # equal scores -> equal weights 1/n
    mean = gnn.with_readout(pretrained, "mean").eval()
    batch = Batch.from_data_list(graphs[:5])
    with torch.no_grad():
        assert torch.allclose(att.features(batch), mean.features(batch), atol=1e-6)
    w = gnn.attention_weights(att, graphs[0])
    assert np.allclose(w, 1 / graphs[0].num_nodes) and math.isclose(w.sum(), 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="not attention"):
        gnn.attention_weights(mean, graphs[0])


def test_pair_readouts_pool_each_structure_separately(pretrained):
    s, y = tiny_set(2)
    pair = gnn.pair_graph(s[0], s[1], y[0], model=SMALL, entry="hop")
    assert pair.part.tolist() == [0] * len(s[0]) + [1] * len(s[1]) and pair.entry == "hop"
    single = [gnn.structure_to_graph(x, 0.0, model=SMALL) for x in s]
    mean = gnn.with_readout(pretrained, "mean").eval()
    with torch.no_grad():
        h0, h1 = (mean.features(Batch.from_data_list([g])) for g in single)
        for readout, expected in [("pair", [h0, h1]), ("pair_difference", [h0, h1, h1 - h0])]:
            m = gnn.with_readout(pretrained, readout).eval()
            got = m.features(Batch.from_data_list([pair, pair]))
            assert torch.allclose(got, torch.cat(expected, -1).repeat(2, 1), atol=1e-5), readout
        with pytest.raises(ValueError, match="needs pair graphs"):
            gnn.with_readout(pretrained, "pair")(Batch.from_data_list(single))


def test_a_pair_model_trains_and_round_trips_through_a_checkpoint(pretrained, tmp_path):
    s, y = tiny_set(12)
    pairs = [gnn.pair_graph(s[i], s[(i + 1) % 12], y[i] - y[(i + 1) % 12], model=SMALL, entry=i)
             for i in range(12)]
    model, hist = gnn.fine_tune(gnn.with_readout(pretrained, "pair_difference"), pairs, epochs=3, progress=False)
    assert len(hist.train_loss) >= 1 and np.isfinite(hist.train_loss).all()
    assert hist.val_metric[hist.best_epoch] == min(hist.val_metric)
    loaded = gnn.load_model(gnn.save_model(model, tmp_path / "pair.pt"))
    assert loaded.config["readout"] == "pair_difference"
    assert np.allclose(gnn.predict(loaded, pairs), gnn.predict(model, pairs), atol=1e-6)


# ------------------------------------------------------------------ data


@pytest.mark.data
def test_transfer_learning_loader_and_registry_names():
    df = data.load_transfer_learning("pz", "ft", size=10, trial=1)
    assert len(df) == 10 and df.target.between(-1, 1).all() and df.index[0].startswith("pz:")
    assert df.structure.iloc[0].num_sites > 0
    with pytest.raises(ValueError, match="only .* have a test set"):
        data.transfer_file("fe", "test")
    with pytest.raises(ValueError, match="sizes 10, 100"):
        data.transfer_file("gv", "ft", size=50)
    with pytest.raises(ValueError, match=r"structure 'pz:1': needs the keys"):
        gnn.build_dataset([{"elements": ["Na"]}], [0.0], ids=["pz:1"])


def test_infinite_target_raises_naming_entry():
    s, y = tiny_set(4)
    y[1] = -np.inf
    with pytest.raises(ValueError, match=r"infinite.*entries 'b' \(-inf\)"):
        gnn.build_dataset(s, y, ids=list("abcd"))
    y = np.array([[1.0, np.nan], [np.inf, 2.0], [3.0, 4.0], [5.0, 6.0]])
    with pytest.raises(ValueError, match=r"entries 'b' \(\[inf, 2.0\]\)"):  # missing values allowed, inf never
        gnn.build_dataset(s, y, ids=list("abcd"), allow_missing=True)


@pytest.mark.parametrize("n_ids", [2, 4])
def test_ids_must_name_every_structure(n_ids):
    s, y = tiny_set(3)
    with pytest.raises(ValueError, match=f"{n_ids} ids for 3 structures: give one id per structure"):
        gnn.build_dataset(s, y, ids=list("abcd")[:n_ids])


def test_overlapping_atoms_raise_naming_the_structure_the_pair_and_the_distance():
    twice = Structure(Lattice.cubic(4.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    ok = rocksalt(5.6).get_primitive_structure()
    with pytest.raises(ValueError, match=r"entry 'dup': sites 1 \(Cl\) and 2 \(Cl\) overlap, 0 Å apart"):
        gnn.build_dataset([ok, twice], [1.0, 2.0], ids=["ok", "dup"])
    near = Structure(Lattice.cubic(4.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.501]])
    with pytest.raises(ValueError, match=r"sites 1 \(Cl\) and 2 \(Cl\) overlap, 0.004 Å apart"):
        gnn.structure_to_graph(near, 1.0, entry="near")
    assert gnn.structure_to_graph(ok).edge_dist.min() == pytest.approx(2.8, rel=1e-5)  # a/2


def test_disordered_structure_raises_naming_the_entry_and_site():
    alloy = Structure(Lattice.cubic(3.6), ["Cu", {"Au": 0.5, "Cu": 0.5}], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match=r"structure 'CuAu-1' .* disordered at site 1 .*OrderDisorderedStructure"):
        gnn.build_dataset([rocksalt(5.6), alloy], [1.0, 2.0], ids=["ok", "CuAu-1"])


def test_a_convolution_backward_pass_repeats_exactly_on_two_threads():
    # the backward pass of an indexing x[dst] adds into the atoms' gradient rows from several threads in
    # whatever order they come, so seeded training did not repeat; FactorisedCGConv gathers with index_select
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(0)
        n, e = 4000, 60000
        x0 = torch.randn(n, 64, generator=g)
        edge_index = torch.randint(0, n, (2, e), generator=g)
        edge_attr = torch.randn(e, 16, generator=g)
        torch.manual_seed(0)
        conv = gnn.FactorisedCGConv(64, dim=16, aggr="add", batch_norm=False)
        grads = []
        for _ in range(6):
            x = x0.clone().requires_grad_(True)
            conv(x, edge_index, edge_attr).square().sum().backward()
            grads.append(x.grad)
        assert all(torch.equal(grads[0], q) for q in grads[1:])
    finally:
        torch.set_num_threads(threads)
