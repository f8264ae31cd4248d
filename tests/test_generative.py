"""Lesson 08: periodic noise, the denoiser's invariances, sampling shapes (CDVAE's metrics: test_metrics.py)."""

import math

import numpy as np
import pytest
import torch
from pymatgen.core import Composition, Lattice, Structure

from test_metrics import perovskite, rocksalt

from mlcourse import generative as g


def small_training_set():
    """Cells of 1, 2, 5 and 8 atoms, so that nothing assumes one atom count."""
    bcc = Structure(Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]])
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return [bcc, cscl, perovskite(), perovskite(4.0, ("Ba", "Zr", "O", "O", "O")), rocksalt().get_primitive_structure(),
            Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])]


# ------------------------------------------------------------------------------ periodic noise


def test_wrapped_noise_stays_in_unit_cell_and_is_periodic_around_boundary():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 3), 0.99)
    xt, eps = g.add_wrapped_noise(x0, 0.05, gen)
    assert float(xt.min()) >= 0 and float(xt.max()) < 1
    # about half the samples crossed the boundary at 1 and came back near 0
    assert 0.3 < float((xt < 0.5).float().mean()) < 0.7
    # the wrapped displacement is the original Gaussian noise
    d = (xt - x0 + 0.5) % 1.0 - 0.5
    torch.testing.assert_close(d, 0.05 * eps, atol=1e-5, rtol=0)


def test_wide_wrapped_noise_is_uniform():
    gen = torch.Generator().manual_seed(1)
    xt, _ = g.add_wrapped_noise(torch.zeros(50000, 1), 1.0, gen)
    hist = np.histogram(xt.numpy(), bins=10, range=(0, 1))[0] / 50000
    assert np.abs(hist - 0.1).max() < 0.01


def test_wrapped_normal_score_is_periodic_and_matches_finite_differences():
    d = torch.linspace(-0.5, 0.5, 41, dtype=torch.float64)
    for sigma in (0.05, 0.3, 1.0):
        s = g.wrapped_normal_score(d, sigma)
        torch.testing.assert_close(s, g.wrapped_normal_score(d + 1.0, sigma))
        torch.testing.assert_close(s, g.wrapped_normal_score(d - 3.0, sigma))

        def logp(x):
            k = torch.arange(-10, 11, dtype=torch.float64)
            return torch.logsumexp(-((x[:, None] + k) ** 2) / (2 * sigma**2), dim=1)

        h = 1e-5
        fd = (logp(d + h) - logp(d - h)) / (2 * h)
        torch.testing.assert_close(s, fd, atol=1e-4 / sigma**2, rtol=1e-4)
    # narrow noise: the score of an ordinary Gaussian; at d = +-0.5 the two images cancel
    torch.testing.assert_close(g.wrapped_normal_score(torch.tensor([0.01]), 0.02), torch.tensor([-0.01 / 0.02**2]))
    assert abs(float(g.wrapped_normal_score(torch.tensor([0.5]), 0.3))) < 1e-5


# ------------------------------------------------------------------------------ the denoiser


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return g.CrystalDiffusion.from_structures(small_training_set(), hidden=32, n_layers=2, T=20)


def test_denoiser_is_permutation_translation_and_image_invariant(model):
    b = model.to_batch([perovskite(), rocksalt().get_primitive_structure()])
    gen = torch.Generator().manual_seed(3)
    types = model.type_input(b.types, torch.rand(len(b.types), generator=gen) < 0.5)
    t = torch.tensor([0.3, 0.7])
    cell = model.cell(b.lattice)
    score, lat, logits = model.net(types, b.frac, b.lattice, t, b.batch, cell)
    # permute the atoms of the first crystal
    perm = torch.tensor([3, 1, 4, 0, 2, 5, 6])
    s2, l2, lg2 = model.net(types[perm], b.frac[perm], b.lattice, t, b.batch, cell)
    torch.testing.assert_close(s2, score[perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(lg2, logits[perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(l2, lat, atol=1e-5, rtol=1e-4)
    # translate every atom (periodically) and move some atoms to other periodic images
    shifted = g.wrap(b.frac + torch.tensor([0.37, 0.81, 0.05])) + torch.tensor([[1.0, 0, -2]] * 7)
    s3, l3, lg3 = model.net(types, shifted, b.lattice, t, b.batch, cell)
    torch.testing.assert_close(s3, score, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(l3, lat, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(lg3, logits, atol=1e-4, rtol=1e-4)


def test_round_trip_and_unknown_element(model):
    structures = small_training_set()
    back = model.to_structures(model.to_batch(structures))
    for s, r in zip(structures, back):
        assert s.composition == r.composition
        np.testing.assert_allclose(s.lattice.abc, r.lattice.abc, rtol=1e-5)
        np.testing.assert_allclose(s.frac_coords % 1, r.frac_coords, atol=1e-6)
    with pytest.raises(ValueError, match="structure 1 .*element Xe"):
        model.to_batch([perovskite(), Structure(Lattice.cubic(4), ["Xe"], [[0, 0, 0]])])


def test_training_reduces_loss_and_sampling_handles_variable_atom_counts(tmp_path):
    train = small_training_set() * 4
    m = g.CrystalDiffusion.from_structures(train, hidden=32, n_layers=2, T=20, seed=1)
    m.fit(train, epochs=30, batch_size=8, lr=3e-3, progress=False)
    assert m.history.train_loss[-1] < 0.7 * m.history.train_loss[0]
    out = m.sample(num_atoms=[1, 3, 5, 8, 2], seed=0, progress=False)
    assert [len(s) for s in out] == [1, 3, 5, 8, 2]
    assert all(np.all((s.frac_coords >= 0) & (s.frac_coords < 1)) for s in out)
    assert [len(s) for s in m.sample(num_atoms=[4, 1], corrector=0.2, seed=0, progress=False)] == [4, 1]
    # n crystals with atom counts from the training distribution
    sizes = {len(s) for s in m.sample(n=12, seed=0, progress=False)}
    assert sizes <= set(m.num_atoms_counts)
    # composition inpainting keeps the atom types exactly
    comps = ["SrTiO3", "NaCl", "Fe", "Ba2Zr2O6"]
    out = m.sample(compositions=comps, seed=0, progress=False)
    assert [s.composition for s in out] == [Composition(c) for c in comps]
    traj = m.trajectory(5, compositions=comps, seed=0, progress=False)
    assert [t for t, _ in traj] == [20, 15, 10, 5, 1]
    assert all(len(x) == len(comps) for _, x in traj)
    assert traj[-1][1] == out  # the same draws: the last snapshot is the sample
    free = m.trajectory(10, num_atoms=[5, 5], seed=0, progress=False)
    assert any(sp.symbol == "X" for s in free[0][1] for sp in s.composition)  # types still hidden at t = T
    assert not any(sp.symbol == "X" for s in free[-1][1] for sp in s.composition)
    with pytest.raises(ValueError, match="element Xe"):
        m.sample(compositions=["XeF2"], progress=False)
    # the saved model reproduces the model's samples
    m2 = g.CrystalDiffusion.load(m.save(tmp_path / "m.pt"))
    a = m.sample(num_atoms=[5], seed=4, progress=False)[0]
    b = m2.sample(num_atoms=[5], seed=4, progress=False)[0]
    np.testing.assert_allclose(a.frac_coords, b.frac_coords, atol=2e-2)  # float16 weights
    assert m2.history == m.history


def test_fit_resumes_from_its_checkpoint_and_load_reads_old_histories(tmp_path, monkeypatch):
    train = small_training_set() * 2  # 12 crystals: 3 batches of 4 per epoch

    def fresh():
        return g.CrystalDiffusion.from_structures(train, hidden=16, n_layers=1, T=10, seed=2)

    full = fresh().fit(train, epochs=4, batch_size=4, lr=3e-3, progress=False)
    calls, loss = [], g.CrystalDiffusion.loss

    def crashing(self, b, generator=None):
        calls.append(1)
        if len(calls) == 8:  # in the third epoch
            raise KeyboardInterrupt
        return loss(self, b, generator)

    monkeypatch.setattr(g.CrystalDiffusion, "loss", crashing)
    with pytest.raises(KeyboardInterrupt):
        fresh().fit(train, epochs=4, batch_size=4, lr=3e-3, checkpoint=tmp_path / "state.pt", progress=False)
    monkeypatch.setattr(g.CrystalDiffusion, "loss", loss)
    resumed = fresh().fit(train, epochs=4, batch_size=4, lr=3e-3, checkpoint=tmp_path / "state.pt", progress=False)
    assert resumed.history.train_loss == full.history.train_loss
    assert all(torch.equal(v, full.net.state_dict()[k]) for k, v in resumed.net.state_dict().items())
    # files saved before mlcourse.training stored the history as a list of epoch losses
    d = torch.load(full.save(tmp_path / "m.pt"), weights_only=True)
    torch.save(d | {"history": [0.5, 0.25]}, tmp_path / "old.pt")
    old = g.CrystalDiffusion.load(tmp_path / "old.pt").history
    assert old.train_loss == [0.5, 0.25] and old.best_epoch == 1 and old.val_metric == []
    # files written before the local cutoff hold a different network: refused, not half-loaded
    torch.save({k: v for k, v in d.items() if k != "cutoff"}, tmp_path / "pre_cutoff.pt")
    with pytest.raises(ValueError, match="older mlcourse whose denoiser had no local cutoff; retrain"):
        g.CrystalDiffusion.load(tmp_path / "pre_cutoff.pt")


def test_atom_count_features_tell_neighbouring_counts_apart_and_files_without_the_setting_are_refused(tmp_path):
    emb = g.PeriodicDenoiser.count_embedding(torch.arange(1.0, 65.0), 16)
    assert emb.shape == (64, 16)
    gaps = torch.cdist(emb, emb) + 10 * torch.eye(64)
    assert float(gaps.min()) > 0.3  # any two counts of 1-64 atoms differ clearly
    with pytest.raises(ValueError, match="count_features must be an even number >= 0, not 3"):
        g.PeriodicDenoiser(2, count_features=3)
    train = small_training_set()
    plain = g.CrystalDiffusion.from_structures(train, hidden=16, n_layers=1, T=10, count_features=0)
    m = g.CrystalDiffusion.from_structures(train, hidden=16, n_layers=1, T=10)
    assert m.count_features == 16
    assert plain.net.embed.in_features + 16 == m.net.embed.in_features
    assert g.CrystalDiffusion.load(m.save(tmp_path / "m.pt")).count_features == 16
    back = g.CrystalDiffusion.load(plain.save(tmp_path / "plain.pt"))
    assert back.count_features == 0
    np.testing.assert_allclose(back.sample(num_atoms=[5], seed=2, progress=False)[0].frac_coords,  # file: float16
                               plain.sample(num_atoms=[5], seed=2, progress=False)[0].frac_coords, atol=2e-2)
    # a file saved before the setting existed cannot say which network it holds
    d = torch.load(tmp_path / "plain.pt", weights_only=True)
    torch.save({k: v for k, v in d.items() if k != "count_features"}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="no atom-count features setting; retrain it"):
        g.CrystalDiffusion.load(tmp_path / "old.pt")


def test_cell_matches_pymatgen(model):
    structures = small_training_set()[:3] + [Structure(Lattice.from_parameters(3.1, 4.2, 5.3, 80, 95, 110), ["Fe"], [[0, 0, 0]])]
    lat = (g.lattice_features(structures) - model.lattice_mean) / model.lattice_std
    cell = model.cell(torch.tensor(lat, dtype=torch.float64)).numpy()
    for s, m in zip(structures, cell):
        ref = Lattice.from_parameters(*s.lattice.parameters).matrix
        np.testing.assert_allclose(m, ref, atol=1e-8)


def test_lattice_features_round_trip():
    s = Structure(Lattice.from_parameters(3.1, 4.2, 5.3, 80, 95, 110), ["Fe"], [[0, 0, 0]])
    f = g.lattice_features([s])[0]
    assert f[0] == pytest.approx(math.log(3.1))
    np.testing.assert_allclose(g.features_to_lattice(f).parameters, s.lattice.parameters, rtol=1e-8)


def test_disordered_structures_are_named_not_an_attribute_error():
    alloy = Structure(Lattice.cubic(3.6), ["Cu", {"Au": 0.5, "Cu": 0.5}], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match=r"structure 1 .* disordered at site 1 .*OrderDisorderedStructure"):
        g.CrystalDiffusion.from_structures([rocksalt(), alloy])
    model = g.CrystalDiffusion.from_structures([rocksalt(), Structure(Lattice.cubic(3.6), ["Cu", "Au"], [[0, 0, 0], [0.5] * 3])])
    with pytest.raises(ValueError, match=r"structure 0 .* disordered at site 1"):
        model.to_batch([alloy])


@pytest.mark.parametrize("kw,message", [
    (dict(n=0), "n must be a positive number of crystals to sample, not 0"),
    (dict(n=-3), "n must be a positive number of crystals to sample, not -3"),
    (dict(num_atoms=[]), "no crystals to start: num_atoms .* is empty"),
    (dict(compositions=[]), "no crystals to start"),
    (dict(n=2, temperature=0), r"temperature must be a finite number > 0 .* not 0"),
    (dict(n=2, temperature=-1.0), r"temperature must be a finite number > 0 .* not -1.0"),
    (dict(n=2, temperature=float("nan")), "temperature must be a finite number > 0"),
    (dict(n=2, corrector=-0.1), "corrector must be a finite number >= 0"),
])
def test_sampling_nothing_or_at_zero_temperature_is_a_clear_error(model, kw, message):
    with pytest.raises(ValueError, match=message):
        model.sample(seed=0, progress=False, **kw)
    with pytest.raises(ValueError, match=message):
        model.trajectory(5, seed=0, progress=False, **kw)


def silicon_cells(copies: int = 6, seed: int = 0) -> list:
    """Diamond Si cells of 2, 4, 6, 8 and 16 atoms (primitive, primitive 2x1x1 and 3x1x1, conventional,
    conventional 2x1x1), each with small random axial strains (up to 2 %): one element, five atom counts."""
    rng = np.random.default_rng(seed)
    conv = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    prim = conv.get_primitive_structure()
    out = []
    for cell in (prim, prim * (2, 1, 1), prim * (3, 1, 1), conv, conv * (2, 1, 1)):
        for _ in range(copies):
            s = cell.copy()
            s.apply_strain(rng.uniform(-0.02, 0.02, 3))
            out.append(s)
    return out


@pytest.mark.slow
def test_samples_of_a_variable_size_single_element_set_have_its_bond_lengths():
    """Issue 17: trained on diamond cells of 2-16 atoms, the samples' nearest-neighbour distances match
    the training set's (Si-Si 2.35 Å). Before the denoiser saw plane waves along lattice diagonals and
    every periodic image within a cutoff, 2-atom samples often put the second atom at (1/4, -1/4, 1/4)
    instead of (1/4, 1/4, 1/4) of the primitive cell: a 1.4 Å bond."""
    from mlcourse import metrics

    train = silicon_cells()
    m = g.CrystalDiffusion.from_structures(train, hidden=32, n_layers=2, T=200, seed=0)
    m.fit(train, epochs=600, batch_size=10, lr=3e-3, progress=False)
    samples = m.sample(num_atoms=[2, 4, 6, 8, 16] * 8, seed=0, corrector=0.3, progress=False)
    valid = [s for s in samples if metrics.structure_validity(s)]
    assert len(valid) >= 0.7 * len(samples)
    # over all valid samples: 0.177 Å; 0.268 with the atom count as ln N only (count_features=0), whose 6- and
    # 8-atom cells got blended lattices (below); with training and sampling seed 1: 0.135 and 0.227. Not yet
    # in it: the 16-atom cells, nearly all invalid (two atoms on one site), so this is not issue 17's "done"
    assert metrics.nn_distance_wasserstein(valid, train) < 0.2  # Å
    two = [s for s in valid if len(s) == 2]
    assert len(two) >= 5
    assert metrics.nn_distance_wasserstein(two, [s for s in train if len(s) == 2]) < 0.15  # Å
    # each atom count gets its own lattice: with ln N as the only atom-count input (count_features=0)
    # the 6- and 8-atom cells came out with median angles of 75 and 78 degrees, between the 60 of the
    # 2-6-atom cells and the 90 of the 8- and 16-atom ones
    for n, angle in [(6, 60.0), (8, 90.0)]:
        cells = [s for s in samples if len(s) == n]
        assert abs(np.median([s.lattice.angles for s in cells]) - angle) < 3.0, n
        ref = np.median([s.volume / n for s in train if len(s) == n])
        assert abs(np.median([s.volume / n for s in cells]) / ref - 1) < 0.05, n  # volume per atom


def test_property_conditioning_with_classifier_free_guidance(tmp_path):
    train = small_training_set() * 2
    y = [float(len(s)) for s in train]  # a property the structure determines: the atom count
    m = g.CrystalDiffusion.from_structures(train, properties=y, property_name="atoms (count)", hidden=16,
                                           n_layers=1, T=10, seed=3)
    assert m.conditional and m.property_mean == pytest.approx(np.mean(y))
    with pytest.raises(ValueError, match="conditioned on atoms .*properties="):
        m.fit(train, epochs=1, progress=False)
    m.fit(train, epochs=3, batch_size=4, progress=False, properties=y)
    free = m.sample(num_atoms=[5, 2], seed=0, progress=False)  # the null token: unconditional
    a = m.sample(num_atoms=[5, 2], seed=0, progress=False, target=5.0)
    b = m.sample(num_atoms=[5, 2], seed=0, progress=False, target=[5.0, 2.0], guidance=2.0)
    assert [len(s) for s in a + b + free] == [5, 2] * 3
    assert not np.allclose(a[0].frac_coords, b[0].frac_coords) and not np.allclose(a[0].frac_coords, free[0].frac_coords)
    m2 = g.CrystalDiffusion.load(m.save(tmp_path / "c.pt"))
    assert (m2.property_name, m2.property_mean, m2.property_std) == (m.property_name, m.property_mean, m.property_std)
    np.testing.assert_allclose(m2.sample(num_atoms=[5], seed=1, progress=False, target=3.0, guidance=1.0)[0].frac_coords,
                               m.sample(num_atoms=[5], seed=1, progress=False, target=3.0, guidance=1.0)[0].frac_coords, atol=2e-2)
    for kw, message in [(dict(guidance=1.0), "guidance=1.0 needs a target"),
                        (dict(target=float("nan")), "property value 0 must be a finite number, not nan"),
                        (dict(target=[1.0]), r"one property value per crystal \(2\)"),
                        (dict(target=1.0, guidance=-1.0), "guidance must be a finite number >= 0")]:
        with pytest.raises(ValueError, match=message):
            m.sample(num_atoms=[5, 2], seed=0, progress=False, **kw)
    with pytest.raises(ValueError, match="property value 1 must be a finite number, not 'x'"):
        g.CrystalDiffusion.from_structures(train[:2], properties=[1.0, "x"])
    plain = g.CrystalDiffusion.from_structures(train, hidden=16, n_layers=1, T=10)
    with pytest.raises(ValueError, match="built without a property"):
        plain.sample(num_atoms=[5], target=1.0, progress=False)


@pytest.mark.slow
def test_guided_samples_follow_the_target_property():
    """Conditioned on the volume per atom (Å³) of isotropically strained diamond-Si cells, samples at a
    small and a large target come out small and large (the condition reaches the lattice), and
    classifier-free guidance moves them further apart (it extrapolates past the conditional model)."""
    conv = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    prim = conv.get_primitive_structure()
    train = []
    for f in np.linspace(0.9, 1.1, 24):
        s = prim.copy()
        s.scale_lattice(prim.volume * f**3)
        train.append(s)
    y = [s.volume / len(s) for s in train]
    m = g.CrystalDiffusion.from_structures(train, properties=y, property_name="volume per atom (Å³)", hidden=32,
                                           n_layers=2, T=50, seed=0)
    m.fit(train, epochs=150, batch_size=8, lr=3e-3, progress=False, properties=y)
    lo, hi = min(y), max(y)

    def median_volume(target, guidance):
        out = m.sample(num_atoms=[2] * 8, seed=0, target=target, guidance=guidance, progress=False)
        return np.median([s.volume / len(s) for s in out])

    v_lo, v_hi = median_volume(lo, 0.0), median_volume(hi, 0.0)  # the conditional model alone
    assert abs(v_lo - lo) < 0.25 * (hi - lo) and abs(v_hi - hi) < 0.25 * (hi - lo)
    # guidance w > 0 pushes further along the direction the condition adds: the two move apart
    w_lo, w_hi = median_volume(lo, 1.0), median_volume(hi, 1.0)
    assert w_lo < v_lo and w_hi > v_hi
