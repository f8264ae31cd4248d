"""mlcourse.gnn.ALIGNN: line graphs of bond angles, the edge-gated layers, invariances, training, checkpoints,
fine-tuning strategies (the two- and three-body layers of Devi et al.'s strategy 4), on tiny crystals."""

import math
from collections import Counter

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from mlcourse import gnn

torch.set_num_threads(1)
SMALL = dict(cutoff=6.0, max_neighbors=8, hidden=16, n_alignn=1, n_gcn=1)  # graphs and sizes of the tests' networks
NET = gnn.seeded_model(0, "alignn", **SMALL)


def rocksalt_primitive(a: float, cation: str = "Na", anion: str = "Cl") -> Structure:
    h = a / 2
    return Structure(Lattice([[-h, -h, 0], [-h, 0, -h], [0, -h, -h]]), [anion, cation], [[0.5, 0.5, 0.5], [0, 0, 0]])


def tiny_set(n: int = 12, seed: int = 0):
    """Rock-salt crystals whose 'energy' (eV) falls with the lattice constant and depends on the cation."""
    rng = np.random.default_rng(seed)
    structures, targets = [], []
    for i in range(n):
        a, c = rng.uniform(4.6, 6.2), ["Na", "K", "Li"][i % 3]
        structures.append(rocksalt_primitive(a, c))
        targets.append(-0.8 * a + {"Na": 0.0, "K": 0.6, "Li": -0.6}[c])
    return structures, np.array(targets)


def distorted(seed: int = 0) -> Structure:
    """A low-symmetry 8-atom crystal: a rock-salt cube with every atom displaced at random (up to 0.2 Å)."""
    rng = np.random.default_rng(seed)
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    s = Structure(Lattice([[5.4, 0.1, 0.0], [0.0, 5.6, 0.2], [0.1, 0.0, 5.3]]), s.species, s.frac_coords)
    for i in range(len(s)):
        s.translate_sites([i], rng.uniform(-0.2, 0.2, 3), frac_coords=False)
    return s


@pytest.fixture(scope="module")
def graphs():
    s, y = tiny_set()
    return gnn.build_dataset(s, y, model=NET)


def features_one(model, structure) -> torch.Tensor:
    """The crystal vector (before the head) a model in eval mode makes of one structure."""
    with torch.no_grad():
        return model.features(Batch.from_data_list([gnn.structure_to_graph(structure, 0.0, model=model)]))[0]


# ------------------------------------------------------------------ graphs


def test_line_graph_of_simple_cubic_holds_its_right_and_straight_angles():
    s = Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])  # 6 neighbours at 3 Å, along ±x, ±y, ±z
    g = gnn.structure_to_graph(s, 1.0, model=gnn.ALIGNN(cutoff=3.5))
    assert isinstance(g, gnn.AngleGraph) and g.num_edges == 6 and g.line_index.shape == (2, 36)
    a, b = g.line_index
    assert torch.equal(g.edge_index[1, a], g.edge_index[0, b])  # bond a = u → v, bond b = v → w
    # at v: 6 pairs straight back along the same bond (0°), 6 straight on (180°), 24 at right angles
    assert Counter(np.round(g.angle_cos.numpy(), 6).tolist()) == {1.0: 6, -1.0: 6, 0.0: 24}


def test_line_graph_angles_agree_with_the_structures_geometry():
    """The angles at one atom v, by brute force from pymatgen's neighbours: v's bonds in come from its
    neighbour shell u (vectors v → u), its bonds out go to every atom w whose shell holds an image of v
    (vectors v → w); every (in, out) pair is one angle."""
    s, v, k = distorted(), 3, NET.config["max_neighbors"]

    def shell(i):
        near = sorted(s.get_neighbors(s[i], NET.config["cutoff"]), key=lambda n: n.nn_distance)
        return [n for n in near if n.nn_distance <= near[k - 1].nn_distance + gnn.SHELL_TOLERANCE]

    to_u = [n.coords - s[v].coords for n in shell(v)]
    to_w = [s[w].coords - n.coords for w in range(len(s)) for n in shell(w) if n.index == v]
    want = sorted(float(np.dot(p, q) / (np.linalg.norm(p) * np.linalg.norm(q))) for p in to_u for q in to_w)
    g = gnn.structure_to_graph(s, model=NET)
    into_v = set(np.flatnonzero(g.edge_index[1].numpy() == v).tolist())
    got = sorted(c for (a, _), c in zip(g.line_index.T.tolist(), g.angle_cos.tolist()) if a in into_v)
    assert len(got) == len(want) > k and np.allclose(got, want, atol=1e-6)


def test_angle_graphs_keep_the_whole_neighbour_shell_and_cgcnn_graphs_do_not():
    s = Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])  # 6 neighbours at 3 Å, then 12 at 4.24 Å
    assert gnn.structure_to_graph(s, model=gnn.CGCNN(cutoff=4.5, max_neighbors=8)).num_edges == 8
    assert gnn.structure_to_graph(s, model=gnn.ALIGNN(cutoff=4.5, max_neighbors=8)).num_edges == 18
    assert gnn.structure_to_graph(s, model=gnn.ALIGNN(cutoff=4.5, max_neighbors=6)).num_edges == 6
    assert type(gnn.structure_to_graph(s, model=gnn.CGCNN(cutoff=4.5))) is not gnn.AngleGraph


def test_angle_graphs_batch_with_the_dataloader_and_predict_as_one_by_one(graphs):
    batch = next(iter(DataLoader(graphs[:3], batch_size=3)))
    offsets = np.cumsum([0] + [g.num_edges for g in graphs[:2]])
    want = torch.cat([g.line_index + int(o) for g, o in zip(graphs[:3], offsets)], dim=1)
    assert torch.equal(batch.line_index, want) and batch.angle_cos.shape == (sum(g.line_index.size(1) for g in graphs[:3]),)
    together = gnn.predict(NET, graphs[:3])
    alone = [gnn.predict(NET, [g])[0] for g in graphs[:3]]
    assert np.allclose(together, alone, atol=1e-5)
    # multi-property graphs (clones) keep the line graph
    merged = gnn.multi_property_dataset({"a": graphs[:2], "b": graphs[2:4]})
    assert all(isinstance(g, gnn.AngleGraph) for g in merged)


def test_pair_graph_holds_both_line_graphs():
    s, y = tiny_set(2)
    pair = gnn.pair_graph(s[0], s[1], y[0], model=NET, entry="hop")
    a, b = (gnn.structure_to_graph(x, model=NET) for x in s)
    assert isinstance(pair, gnn.AngleGraph) and pair.entry == "hop"
    assert torch.equal(pair.line_index, torch.cat([a.line_index, b.line_index + a.num_edges], dim=1))
    m = gnn.with_readout(NET, "pair_difference").eval()
    with torch.no_grad():
        h0, h1 = (gnn.with_readout(NET, "mean").eval().features(Batch.from_data_list([g])) for g in (a, b))
        assert torch.allclose(m.features(Batch.from_data_list([pair])), torch.cat([h0, h1, h1 - h0], -1), atol=1e-5)


# ------------------------------------------------------------------ the layer and the invariances


def test_teaching_alignn_layer_equals_the_fast_one(graphs):
    torch.manual_seed(0)
    g = graphs[0]
    layer = gnn.ALIGNNLayer(8)
    with torch.no_grad():
        for bn in (m for m in layer.modules() if isinstance(m, torch.nn.BatchNorm1d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    x, y, z = torch.randn(g.num_nodes, 8), torch.randn(g.num_edges, 8), torch.randn(g.line_index.size(1), 8)
    for mode in ("eval", "train"):  # running statistics, then the batch's own
        getattr(layer, mode)()
        with torch.no_grad():
            fast = layer(x, y, z, g.edge_index, g.line_index)
            slow = gnn.alignn_layer_teaching(layer, x, y, z, g.edge_index, g.line_index)
        for name, f, s in zip("xyz", fast, slow):
            assert f.shape == s.shape and torch.allclose(f, s, atol=1e-5), (mode, name)
    # the angles matter: the line-graph half changes the bond features
    layer.eval()
    with torch.no_grad():
        _, m = layer.node_update(x, g.edge_index, y)
        assert not torch.allclose(layer(x, y, z, g.edge_index, g.line_index)[1], m)


def test_predictions_are_invariant_to_rotation_translation_and_atom_order():
    s = distorted()
    model = gnn.seeded_model(1, "alignn", **SMALL).eval()
    model.train()  # batch-norm statistics of crystals like it, as after training
    calibration = Batch.from_data_list([gnn.structure_to_graph(distorted(k), model=model) for k in range(1, 5)])
    with torch.no_grad():
        for _ in range(30):
            model(calibration)
    model.eval()
    ref = features_one(model, s)
    from scipy.spatial.transform import Rotation

    rot = Rotation.random(random_state=3).as_matrix()
    rotated = Structure(Lattice(s.lattice.matrix @ rot.T), s.species, s.frac_coords)
    shifted = s.copy()
    shifted.translate_sites(list(range(len(s))), [0.37, -0.21, 0.55])
    order = np.random.default_rng(0).permutation(len(s))
    permuted = Structure(s.lattice, [s.species[i] for i in order], s.frac_coords[order])
    for name, other in [("rotation", rotated), ("translation", shifted), ("permutation", permuted)]:
        assert torch.allclose(features_one(model, other), ref, atol=1e-5), name
    # and the test could fail: moving one atom by 0.1 Å changes the crystal vector
    moved = s.copy()
    moved.translate_sites([0], [0.1, 0.0, 0.0], frac_coords=False)
    assert (features_one(model, moved) - ref).abs().max() > 1e-3


# ------------------------------------------------------------------ training, checkpoints, bad input


def test_alignn_overfits_a_few_structures(graphs):
    model = gnn.seeded_model(0, "alignn", **SMALL)
    hist = gnn.fit(model, graphs[:6], epochs=150, lr=5e-3, batch_size=6, progress=False)
    assert hist.train_loss[-1] < 0.05 * hist.train_loss[0]
    y = np.array([g.y.item() for g in graphs[:6]])
    # in eval mode (batch norms on running statistics) it still fits: well below predicting the mean
    assert gnn.evaluate(model, graphs[:6])["mae"] < 0.2 * np.mean(np.abs(y - y.mean()))


def test_training_from_scratch_with_alignn_is_deterministic(graphs):
    kw = dict(epochs=3, batch_size=4, progress=False, model_kwargs={"arch": "alignn", **SMALL})
    (m1, _), (m2, _) = gnn.train_from_scratch(graphs, **kw), gnn.train_from_scratch(graphs, **kw)
    assert isinstance(m1, gnn.ALIGNN) and np.array_equal(gnn.predict(m1, graphs), gnn.predict(m2, graphs))


def test_alignn_checkpoint_loads_back_to_the_same_predictions(graphs, tmp_path):
    model, _ = gnn.train_from_scratch(graphs, epochs=2, batch_size=4, progress=False,
                                      model_kwargs={"arch": "alignn", "readout": "attention", **SMALL})
    loaded = gnn.load_model(gnn.save_model(model, tmp_path / "alignn.pt"))
    assert isinstance(loaded, gnn.ALIGNN) and loaded.config == model.config
    assert np.allclose(gnn.predict(loaded, graphs), gnn.predict(model, graphs), atol=1e-6)
    assert torch.load(tmp_path / "alignn.pt", weights_only=True)["arch"] == "alignn"
    half = gnn.load_model(gnn.save_model(model, tmp_path / "half.pt", half=True))
    assert np.allclose(gnn.predict(half, graphs), gnn.predict(model, graphs), atol=2e-2)
    assert gnn.graph_settings(loaded) == (6.0, 8)


def test_bad_input_is_named():
    lonely = Structure(Lattice.cubic(20.0), ["Er", "S"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(gnn.IsolatedAtomError, match=r"entry 'bad-1': site 0 \(Er\) has no neighbour within the cutoff of 6.0"):
        gnn.build_dataset([rocksalt_primitive(5.6), lonely], [1.0, 2.0], ids=["good", "bad-1"], model=NET)
    with pytest.warns(UserWarning, match="bad-1"):
        kept = gnn.build_dataset([rocksalt_primitive(5.6), lonely], [1.0, 2.0], ids=["good", "bad-1"], model=NET,
                                 skip_isolated=True)
    assert [g.entry for g in kept] == ["good"] and isinstance(kept[0], gnn.AngleGraph)
    overlap = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0, 0, 0.0001]])
    with pytest.raises(ValueError, match="entry 'twice': sites 0 \\(Na\\) and 1 \\(Cl\\) overlap"):
        gnn.structure_to_graph(overlap, model=NET, entry="twice")
    plain = gnn.structure_to_graph(rocksalt_primitive(5.6), model=gnn.CGCNN(cutoff=6.0))
    with pytest.raises(ValueError, match=r"reads graphs with bond angles .* build them with model= this network"):
        gnn.predict(NET, [plain])
    heavy = gnn.structure_to_graph(rocksalt_primitive(5.6), model=gnn.ALIGNN(cutoff=6.0, max_z=20))
    with pytest.raises(ValueError, match="atomic number 17 exceeds max_z=11"):
        gnn.predict(gnn.ALIGNN(cutoff=6.0, max_z=11), [heavy])
    with pytest.raises(ValueError, match="unknown network 'dimenet'; choose one of cgcnn, alignn"):
        gnn.seeded_model(0, "dimenet")
    with pytest.raises(ValueError, match="unknown readout 'max'"):
        gnn.ALIGNN(readout="max")


# ------------------------------------------------------------------ fine-tuning strategies


@pytest.fixture(scope="module")
def pretrained(graphs):
    m, _ = gnn.pretrain(graphs, epochs=2, batch_size=4, progress=False, model_kwargs={"arch": "alignn", **SMALL})
    return m


def _group(key: str) -> str:
    parts = key.split(".")
    if parts[0] == "alignn_layers":
        return ".".join(parts[:3])  # alignn_layers.0.node_update / .edge_update
    return ".".join(parts[:2]) if parts[0] == "gcn_layers" else parts[0]


@pytest.mark.parametrize("strategy, conv_layers", [("all", None), ("new_head", None), ("last_layer", None),
                                                   ("conv", "2-body"), ("conv", "3-body")])
def test_alignn_fine_tune_strategies_train_only_their_layers(pretrained, graphs, strategy, conv_layers):
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    model, hist = gnn.fine_tune(pretrained, graphs, strategy, conv_layers=conv_layers, epochs=2, batch_size=4,
                                progress=False)
    assert all(torch.equal(before[k], v) for k, v in pretrained.state_dict().items()), "pre-trained model changed"
    after = model.state_dict()
    changed = {_group(k) for k in after if not k.startswith(("y_", "centers", "angle_centers"))
               and not torch.equal(before[k], after[k])}
    body = {"embedding", "bond_embedding", "angle_embedding", "alignn_layers.0.node_update",
            "alignn_layers.0.edge_update", "gcn_layers.0", "head"}
    assert changed == {"all": body, "new_head": body, "last_layer": {"head"},
                       "2-body": {"alignn_layers.0.node_update", "gcn_layers.0", "head"},
                       "3-body": {"alignn_layers.0.edge_update", "head"}}[conv_layers or strategy]
    assert hist.val_metric[hist.best_epoch] == min(hist.val_metric)


def test_strategy_4_needs_the_body_on_alignn_and_has_no_three_body_layers_on_cgcnn(pretrained):
    with pytest.raises(ValueError, match="give conv_layers='2-body' \\(atom graph\\) or '3-body' \\(line graph\\)"):
        gnn.prepare_fine_tune(pretrained, "conv")
    with pytest.raises(ValueError, match="conv_layers=\\[1\\]: strategy 'conv' on an ALIGNN"):
        gnn.prepare_fine_tune(pretrained, "conv", conv_layers=[1])
    with pytest.raises(ValueError, match="a CGCNN has no separate two- and three-body layers"):
        gnn.prepare_fine_tune(gnn.CGCNN(), "conv", conv_layers="3-body")
    with pytest.raises(ValueError, match="conv_layers='2-body' is for strategy 'conv', not 'all'"):
        gnn.prepare_fine_tune(pretrained, "all", conv_layers="2-body")
    n_2 = sum(p.numel() for p in gnn.prepare_fine_tune(pretrained, "conv", conv_layers="2-body").parameters() if p.requires_grad)
    n_3 = sum(p.numel() for p in gnn.prepare_fine_tune(pretrained, "conv", conv_layers="3-body").parameters() if p.requires_grad)
    h = SMALL["hidden"]
    conv = 5 * (h * h + h) + 2 * 2 * h  # five linear layers and two batch norms
    assert (n_2, n_3) == (2 * conv + h + 1, conv + h + 1)


def test_multi_property_alignn_fine_tunes_with_a_new_head(graphs):
    m, _ = gnn.pretrain({"a": graphs[:6], "b": graphs[6:]}, epochs=1, batch_size=4, progress=False,
                        model_kwargs={"arch": "alignn", **SMALL})
    assert m.tasks == ["a", "b"] and gnn.predict(m, graphs).shape == (len(graphs), 2)
    with pytest.raises(ValueError, match="use strategy 'new_head'"):
        gnn.prepare_fine_tune(m, "all")
    ft, _ = gnn.fine_tune(m, graphs, "new_head", epochs=1, batch_size=4, progress=False)
    assert isinstance(ft, gnn.ALIGNN) and gnn.predict(ft, graphs).shape == (len(graphs),)
    assert math.isfinite(gnn.evaluate(ft, graphs)["mae"])


@pytest.mark.parametrize("arch", ["cgcnn", "alignn"])
def test_with_readout_takes_the_gaussian_centres_from_the_config_not_a_half_precision_file(arch, tmp_path):
    """A half-precision checkpoint rounds the centres; a network with a new readout recomputes them, as
    lesson 07's networks (made from the registered float16 checkpoints) always did."""
    exact = gnn.seeded_model(0, arch)
    half = gnn.load_model(gnn.save_model(exact, tmp_path / "half.pt", half=True))
    assert not torch.equal(half.centers, exact.centers)
    new = gnn.with_readout(half, "attention")
    assert torch.equal(new.centers, exact.centers)
    assert torch.equal(new.state_dict()["embedding.weight"], half.state_dict()["embedding.weight"])
    if arch == "alignn":
        assert torch.equal(new.angle_centers, exact.angle_centers)


def test_the_pairwise_run_restores_from_its_registered_summary(tmp_path):
    """A new machine refills the run folder from alignn_pairwise.json and its summary is the registered one; a
    pre-training whose network an unfinished fit needs, with no registered copy, is left to be trained again."""
    import importlib.util
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "data" / "transfer_learning" / "alignn_pairwise.py"
    spec = importlib.util.spec_from_file_location("alignn_pairwise", script)
    ap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ap)
    registered = json.loads((script.parent / "alignn_pairwise.json").read_text())
    trials = [int(t) for t in registered["trials"]]
    (tmp_path / "all").mkdir()
    ap.restore(tmp_path / "all", script.parent / "alignn_pairwise.json")
    assert json.loads(json.dumps(ap.summary(tmp_path / "all", trials))) == registered
    assert (tmp_path / "all" / "t1_pt_fe.pt").exists()  # from the registered float16 copy
    del registered["trials"]["1"]["fits"]["bg->dc"]  # an unfinished fit that starts from PT bg (no copy)
    (tmp_path / "partial.json").write_text(json.dumps(registered))
    (tmp_path / "partial").mkdir()
    written = ap.restore(tmp_path / "partial", tmp_path / "partial.json")
    assert "t1_pt_bg" not in written and "t1_bg->dc" not in written and "t1_pt_fe" in written


@pytest.mark.data
@pytest.mark.slow
def test_the_band_script_trains_every_design_and_chooses_on_validation_only(tmp_path, monkeypatch, capsys):
    """data/migration_barriers/alignn_band.py on a tiny setting: every design finishes, the summary scores the
    mean of all designs too and chooses the lowest validation MAE, and a folder holding another setup is refused."""
    import importlib.util
    import json
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "data" / "migration_barriers" / "alignn_band.py"
    spec = importlib.util.spec_from_file_location("alignn_band", script)
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    tiny = ["--max-atoms", "50", "--n-train", "12", "--epochs", "1"]
    monkeypatch.setattr(sys, "argv", ["alignn_band.py", str(tmp_path / "run"), *tiny])
    ab.main()
    monkeypatch.setattr(ab, "HERE", tmp_path)  # the MODEL-3 copy and kept checkpoints go here, not beside the script
    monkeypatch.setattr(sys, "argv", ["alignn_band.py", str(tmp_path / "run"), *tiny, "--summary", str(tmp_path / "s.json")])
    ab.main()
    s = json.loads((tmp_path / "s.json").read_text())
    assert set(s["designs"]) == set(ab.DESIGNS) | {ab.ENSEMBLE}
    assert s["chosen"] == min(s["designs"], key=lambda d: s["designs"][d]["val_mae"])
    assert all(len(r["test_pred"]) == 60 for r in s["runs"].values())  # every test pathway, for every design
    assert s["setup"]["n_fit"] + s["setup"]["n_val"] == 12
    model3 = gnn.load_model(tmp_path / "alignn_band_model3.pt")  # float16 copy of the paper's design
    assert model3.pooling.name == "mean" and model3.config["n_tasks"] == 1
    monkeypatch.setattr(sys, "argv", ["alignn_band.py", str(tmp_path / "run"), "--epochs", "2"])
    with pytest.raises(SystemExit, match="holds a run with"):
        ab.main()
    # a new machine: the registered summary refills the run folder, the summary comes out the same, no fit runs
    monkeypatch.setattr(ab, "run", lambda *args: pytest.fail("a restored design was trained again"))
    monkeypatch.setattr(sys, "argv", ["alignn_band.py", str(tmp_path / "new"), *tiny, "--restore", str(tmp_path / "s.json")])
    ab.main()
    monkeypatch.setattr(sys, "argv", ["alignn_band.py", str(tmp_path / "new"), *tiny, "--summary", str(tmp_path / "s2.json")])
    ab.main()
    assert json.loads((tmp_path / "s2.json").read_text()) == s
    with pytest.raises(SystemExit, match="is a run with"):
        ab.restore(tmp_path / "other", tmp_path / "s.json", s["setup"] | {"epochs": 2})
    assert not list((tmp_path / ab.UNFINISHED).glob("*.ckpt"))  # every design finished: no checkpoint kept
    # a design still training when the summary was taken: its kept checkpoint goes to the new machine's folder
    unfinished = ab.task_name(ab.MODEL3)
    del s["runs"][ab.MODEL3]
    (tmp_path / "partial.json").write_text(json.dumps(s))
    (tmp_path / ab.UNFINISHED).mkdir(exist_ok=True)
    (tmp_path / ab.UNFINISHED / f"{unfinished}.ckpt").write_bytes(b"state")
    (tmp_path / "third").mkdir()
    assert ab.MODEL3 not in ab.restore(tmp_path / "third", tmp_path / "partial.json", {"epochs": 1})
    assert (tmp_path / "third" / f"{unfinished}.ckpt").read_bytes() == b"state"
