"""Migration-barrier data (parser, published split) and the capstone's helpers (descriptors, NEB)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from mlcourse import data, migration

CUBE = {"lattice_mat": [[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]], "coords": [[0, 0, 0], [0.5, 0.5, 0.5]],
        "elements": ["Li", "O"], "cartesian": False, "abc": [4, 4, 4], "angles": [90, 90, 90], "props": ["", ""]}


def test_jarvis_structure_honours_the_cartesian_flag_and_the_string_form():
    frac = data.jarvis_structure(CUBE)
    cart = data.jarvis_structure({**CUBE, "coords": [[0, 0, 0], [2.0, 2.0, 2.0]], "cartesian": True})
    as_text = data.jarvis_structure(str(CUBE))
    for s in (cart, as_text):
        np.testing.assert_allclose(s.cart_coords, frac.cart_coords, atol=1e-12)
    assert frac[1].specie.symbol == "O" and frac.distance_matrix[0, 1] == pytest.approx(np.sqrt(12))


@pytest.mark.parametrize("bad, message", [
    ({**CUBE, "elements": ["Li", "Xx"]}, "unknown element"),
    ({**CUBE, "coords": [[0, 0, 0]]}, "2 elements but coords"),
    ({**CUBE, "lattice_mat": [[1, 0, 0], [2, 0, 0], [0, 0, 1]]}, "non-singular"),
    ({k: v for k, v in CUBE.items() if k != "cartesian"}, "needs the keys"),
    ("{'lattice_mat': [[1, 0", "not a JARVIS Atoms dict"),
])
def test_jarvis_structure_names_the_bad_entry(bad, message):
    with pytest.raises(ValueError, match=f"structure 'LiO_1'.*{message}"):
        data.jarvis_structure(bad, "LiO_1")


def test_host_name_strips_only_the_pathway_number():
    assert data.host_name("LiRuO2_2") == "LiRuO2"
    assert data.host_name("VPO4F_Rb_3") == "VPO4F_Rb"
    assert data.host_name("Li4P2S7") == "Li4P2S7"
    assert data.host_name("Na2MnSiO4_pc_1") == "Na2MnSiO4_pc"


@pytest.mark.data
def test_published_split_sizes_ions_and_leaky_hosts():
    train, test = data.load_migration_barriers("train"), data.load_migration_barriers("test")
    assert (len(train), len(test)) == (559, 60)
    assert not set(train.sys_name) & set(test.sys_name)  # split by pathway ...
    assert len(set(test.host) & set(train.host)) == 22  # ... but 22 test hosts have a sibling in train
    assert set(train.ion) == {"Li", "Ca", "Na", "Mg", "K", "Zn", "Rb", "Al", "Sr"}
    for _, row in test.iterrows():
        assert row.band.composition.reduced_formula  # parsed
    # `formula` is the band's composition; the material is the band minus the 4 extra ion images
    from pymatgen.core import Composition
    for band, formula, ion in zip(test.band, test.formula, test.ion):
        assert migration.material_composition(band) == Composition(formula) - Composition({ion: 4})
    assert train.target.between(0, 9).all()


@pytest.mark.data
def test_tabulation_sheets_join_the_split_and_unknown_sheets_are_named():
    full = data.load_migration_tabulation()
    assert len(full) == 619 and set(data.load_migration_barriers("test").sys_name) <= set(full.sys_name)
    paper = data.load_migration_tabulation("TRAINING-PREDICTIONS")
    assert len(paper) == 559
    # the data README quotes MODEL-3's training MAE as 0.085 eV
    assert np.mean(np.abs(paper["MODEL-3"] - paper["TARGET"])) == pytest.approx(0.085, abs=5e-4)
    with pytest.raises(ValueError, match="unknown sheet 'TEST'"):
        data.load_migration_tabulation("TEST")


@pytest.mark.data
def test_endpoints_of_a_band_match_the_published_initial_and_final_cells():
    test, ends = data.load_migration_barriers("test"), data.load_migration_endpoints()
    assert list(ends.sys_name) == list(test.sys_name)
    same_lattice = 0
    for band, (_, row) in zip(test.band, ends.iterrows()):
        ini, fin = migration.endpoints(band)
        assert len(ini) == len(row.initial) == len(band) - 4
        if np.allclose(ini.lattice.matrix, row.initial.lattice.matrix, atol=1e-6):
            same_lattice += 1
            assert ini[0].distance(row.initial[0]) < 1e-3 or ini[0].is_periodic_image(row.initial[0], tolerance=1e-3)
    assert same_lattice >= 50


def test_load_migration_barriers_rejects_a_nan_barrier(tmp_path, fake_fetch):
    import json

    band = {**CUBE, "coords": [[0, 0, x] for x in (0, .1, .2, .3, .4)] + [[.5, .5, .5]],
            "elements": ["Li"] * 5 + ["O"]}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"jid": 0, "class": "X", "sys_name": "LiO_1", "formula": "Li1 O1",
                                "target": float("nan"), "atoms": band}]))
    fake_fetch(bad)
    with pytest.raises(ValueError, match="LiO_1"):
        data.load_migration_barriers("train")


def _band(hop=(0.5, 0, 0)):
    lattice = Lattice.cubic(6.0)
    ions = [np.multiply(hop, t) for t in np.linspace(0, 1, 5)]
    return Structure(lattice, ["Li"] * 5 + ["O", "O"], ions + [[0.25, 0.5, 0.0], [0.25, 0.0, 0.5]])


def test_band_features_on_a_hand_made_hop():
    f = migration.band_features(_band())
    assert f["hop_length"] == pytest.approx(3.0)
    assert f["d_min_2"] == pytest.approx(3.0)  # mid image at x = 1.5 Å; O atoms 3 Å away
    assert f["bottleneck"] == pytest.approx(min(f[f"d_min_{k}"] for k in range(5)))
    assert f["anion_distance_mid"] == pytest.approx(3.0)  # O is more electronegative than Li
    assert migration.material_composition(_band()).formula == "Li1 O2"


def test_arrhenius_diffusivity_changes_tenfold_per_60_meV_at_300_K():
    d = migration.arrhenius_diffusivity([0.3, 0.3 + 0.0595], T=300.0)
    assert d[0] / d[1] == pytest.approx(10.0, rel=0.01)


@pytest.mark.slow
def test_neb_finds_the_emt_vacancy_hop_in_copper():
    """A vacancy hop in fcc Cu with ASE's EMT: a symmetric path with a barrier of a few tenths of an eV."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    cu = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    initial = cu.copy()
    del initial[0]
    final = cu.copy()
    hop_to = 1  # a nearest neighbour of site 0 moves into the vacancy
    final.positions[hop_to] = cu.positions[0]
    del final[0]
    em, profile = migration.neb_barrier(initial, final, EMT(), n_images=3, fmax=0.05, steps=300)
    assert 0.3 < em < 1.0
    assert profile[0] == 0.0 and abs(profile[-1]) < 0.02  # symmetric hop
    assert np.argmax(profile) == 2  # climbing image in the middle


@pytest.mark.parametrize("key, bad", [("lattice_mat", [[4.0, 0, 0], [0, float("nan"), 0], [0, 0, 4.0]]),
                                      ("coords", [[0, 0, 0], [0.5, float("inf"), 0.5]])])
def test_jarvis_structure_with_nan_or_inf_names_the_structure_and_the_row(key, bad):
    with pytest.raises(ValueError, match=rf"structure 'jid-7': {key} row 1 .*NaN or infinite"):
        data.jarvis_structure({**CUBE, key: bad}, "jid-7")


@pytest.mark.parametrize("T", [0.0, -300.0, float("nan")])
def test_arrhenius_diffusivity_needs_a_positive_temperature(T):
    with pytest.raises(ValueError, match=r"T \(K\) must be a finite number > 0"):
        migration.arrhenius_diffusivity(0.3, T=T)


def test_endpoints_with_an_infinite_barrier_name_the_pathway(tmp_path, fake_fetch):
    import json

    entries = [{"sys_name": name, "atoms_ini": CUBE, "atoms_fin": CUBE, "target": target}
               for name, target in (("LiO_1", 0.4), ("LiO_2", float("inf")))]
    path = tmp_path / "ends.json"
    path.write_text(json.dumps(entries))
    fake_fetch(path)
    with pytest.raises(ValueError, match=r"infinite.*'LiO_2' \(inf\)"):
        data.load_migration_endpoints()
