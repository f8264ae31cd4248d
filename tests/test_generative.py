"""Lesson 08: periodic noise, the denoiser's invariances, sampling shapes, CDVAE's metrics."""

import math

import numpy as np
import pytest
import torch
from pymatgen.core import Composition, Lattice, Structure

from mlcourse import generative as g


def perovskite(a=3.9, species=("Sr", "Ti", "O", "O", "O")):
    return Structure(Lattice.cubic(a), list(species),
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def rocksalt(a=5.64):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


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
    m.fit(train, epochs=30, batch_size=8, lr=3e-3, checkpoint=tmp_path / "m.pt", progress=False)
    assert m.history[-1] < 0.7 * m.history[0]
    out = m.sample(num_atoms=[1, 3, 5, 8, 2], seed=0, progress=False)
    assert [len(s) for s in out] == [1, 3, 5, 8, 2]
    assert all(np.all((s.frac_coords >= 0) & (s.frac_coords < 1)) for s in out)
    assert [len(s) for s in m.sample(num_atoms=[4, 1], corrector=0.2, seed=0, progress=False)] == [4, 1]
    # n crystals with atom counts from the training distribution
    sizes = {len(s) for s in m.sample(n=12, seed=0, progress=False)}
    assert sizes <= set(m.num_atoms_counts)
    # composition inpainting keeps the atom types exactly
    comps = ["SrTiO3", "NaCl", "Fe", "Ba2Zr2O6"]
    out, traj = m.sample(compositions=comps, seed=0, keep_every=5, progress=False)
    assert [s.composition for s in out] == [Composition(c) for c in comps]
    assert [t for t, _ in traj] == [20, 15, 10, 5, 1]
    assert all(len(x) == len(comps) for _, x in traj)
    with pytest.raises(ValueError, match="element Xe"):
        m.sample(compositions=["XeF2"], progress=False)
    # the checkpoint reproduces the model's samples
    m2 = g.CrystalDiffusion.load(tmp_path / "m.pt")
    a = m.sample(num_atoms=[5], seed=4, progress=False)[0]
    b = m2.sample(num_atoms=[5], seed=4, progress=False)[0]
    np.testing.assert_allclose(a.frac_coords, b.frac_coords, atol=2e-2)  # float16 weights
    assert m2.history == m.history


# ------------------------------------------------------------------------------ CDVAE's metrics


def test_structure_validity_known_good_and_bad():
    assert g.structure_validity(perovskite())
    assert g.structure_validity(rocksalt())
    # two atoms 0.3 Å apart, the second only through the periodic boundary
    close = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0.01, 0, 0], [0.95, 0, 0]])
    assert close.distance_matrix[0, 1] == pytest.approx(0.24)
    assert not g.structure_validity(close)
    assert g.structure_validity(Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0.0, 0, 0], [0.13, 0, 0]]))  # 0.52 Å
    tiny = Structure(Lattice.cubic(0.4), ["Fe"], [[0, 0, 0]])  # 0.064 Å^3
    assert not g.structure_validity(tiny)


@pytest.mark.parametrize("formula,valid", [
    ("SrTiO3", True), ("NaCl", True), ("Fe2O3", True), ("BaZrO3", True), ("LaAlO3", True),
    ("Fe", True), ("CuZn", True),           # one element; only metals (an alloy)
    ("NaCl2", False), ("CaF3", False), ("LiF2", False), ("KO3F", False), ("O3F", False),
])
def test_composition_validity_known_cases(formula, valid):
    assert g.composition_validity(formula) is valid


def test_composition_validity_pauling_test_matters():
    # NaSe balances only as Na(-1) Se(+1): the cation would be more electronegative than the anion
    assert g.composition_validity("NaSe", use_pauling_test=False)
    assert not g.composition_validity("NaSe")
    assert g.composition_validity("Na2Se")


def test_composition_validity_agrees_with_smact():
    from smact.screening import smact_validity

    rng = np.random.default_rng(0)
    pool = ["Li", "Na", "K", "Sr", "Ba", "Ti", "Zr", "Fe", "Co", "Ni", "Cu", "Zn", "Al", "Ga", "Sn",
            "Pb", "La", "O", "N", "F", "S", "Cl", "Se", "Bi", "Sb"]
    n_valid = 0
    for _ in range(150):
        els = rng.choice(pool, size=rng.integers(2, 4), replace=False)
        comp = Composition({e: int(rng.integers(1, 4)) for e in els})
        ours = g.composition_validity(comp)
        theirs = smact_validity(comp, oxidation_states_set="smact14")
        assert ours == theirs, comp
        n_valid += ours
    assert 20 < n_valid < 130  # the draws hold both valid and invalid compositions


def test_coverage_counts_nearest_neighbours_and_failed_fingerprints():
    ref_s = [np.array([0.0, 0.0]), np.array([1.0, 0.0])]
    ref_c = [np.array([0.0]), np.array([0.0])]
    gen_s = [np.array([0.05, 0.0]), np.array([5.0, 5.0]), None]
    gen_c = [np.array([1.0]), np.array([9.0]), np.array([0.0])]
    out = g.coverage(gen_s, gen_c, ref_s, ref_c, struc_cutoff=0.2, comp_cutoff=4.0)
    assert out["cov_recall"] == pytest.approx(0.5)       # only the first reference is covered
    assert out["cov_precision"] == pytest.approx(1 / 3)  # the failed one counts in the denominator
    # the composition cutoff matters too (as in CDVAE, the nearest structure and the nearest
    # composition are looked up independently)
    out = g.coverage(gen_s, gen_c, ref_s, ref_c, struc_cutoff=0.2, comp_cutoff=0.5)
    assert out["cov_recall"] == 0 and out["cov_precision"] == 0


def test_fingerprints_and_scaler_shapes():
    fp = g.structure_fingerprint(perovskite())
    assert fp.shape == (61,) and np.isfinite(fp).all()
    # the same structure, supercell and shifted: same fingerprint
    s2 = perovskite().make_supercell([2, 1, 1], in_place=False)
    s2.translate_sites(range(len(s2)), [0.1, 0.2, 0.3])
    np.testing.assert_allclose(g.structure_fingerprint(s2), fp, atol=1e-8)
    c = g.composition_fingerprint(Composition("SrTiO3"))
    assert c.shape == (132,)
    mean, std = g.cdvae_comp_scaler()
    assert mean.shape == std.shape == (132,) and (std > 0).all()
    scaled = g.scale_composition_fingerprints([c, np.full(132, np.nan)])
    np.testing.assert_allclose(scaled[0], (c - mean) / std)
    assert (scaled[1] == 0).all()


def test_evaluate_perfect_copy_scores_full_coverage_and_zero_distance():
    ref = [perovskite(), perovskite(4.0, ("Ba", "Zr", "O", "O", "O")), rocksalt()]
    bad = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0.0, 0, 0], [0.02, 0, 0]])
    out = g.evaluate(ref + [bad], ref, progress=False)
    assert out["struct_valid"] == pytest.approx(0.75) and out["comp_valid"] == 1.0
    assert out["cov_recall"] == 1.0
    assert out["cov_precision"] == pytest.approx(0.75)  # the overlapping pair matches no reference
    assert out["wdist_density"] == pytest.approx(0.0, abs=1e-12)
    assert out["wdist_num_elems"] == pytest.approx(0.0, abs=1e-12)
    assert list(out["per_structure"]["struct_valid"]) == [True, True, True, False]


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
