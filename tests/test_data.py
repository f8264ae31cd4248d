import csv
from fnmatch import fnmatchcase
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold, StratifiedKFold

from mlcourse import cli, data

SHARED = data.SHARED_DATA  # before any test monkeypatches it
MANIFEST = SHARED / "MANIFEST.tsv"


@pytest.mark.data
def test_registry_lists_every_shared_byte_copy_with_its_hash():
    with open(MANIFEST, newline="") as fh:
        manifest = {r["path"]: r for r in csv.DictReader(fh, delimiter="\t")}
    reg = data.registry()
    for path, row in manifest.items():
        if "#" in row["source_path"]:  # sheet exports are not byte copies
            continue
        assert reg[path].sha256 == row["sha256"]
        assert row["source_commit"] in reg[path].url and reg[path].url.endswith(row["source_path"])
        assert reg[path].licence and reg[path].citation


@pytest.mark.data
def test_repository_data_holds_no_copies_of_shared_files():
    with open(MANIFEST, newline="") as fh:
        shared = {r["sha256"] for r in csv.DictReader(fh, delimiter="\t")}
    for path in data.REPO_DATA.rglob("*"):
        if path.is_file():
            assert data.sha256sum(path) not in shared, f"{path} is a copy of a ../shared/data file"


def test_generated_datasets_are_registered_beside_their_script():
    for path in data.REPO_DATA.glob("*/*"):
        if path.suffix in (".db", ".json", ".csv", ".pt"):
            name = path.relative_to(data.REPO_DATA).as_posix()
            assert data.registry()[name].sha256 == data.sha256sum(path), f"rerun data/make_registry.py for {name}"
            assert list(path.parent.glob("*.py")), f"{name} has no generating script beside it"


def test_matbench_structure_datasets_are_registered_for_online_users():
    names = [n for n in data.registry() if n.startswith("matminer/matbench_")]
    assert len(names) == 13
    assert all(data.registry()[n].url.startswith("https://") for n in names)


@pytest.mark.data
def test_load_matbench_expt_gap():
    df = data.load_matbench("expt_gap")
    assert df.shape == (4604, 3)
    assert df.index[0] == "mb-expt-gap-0001" and df.index[-1] == "mb-expt-gap-4604"
    assert df.composition.iloc[0].reduced_formula == "Ag(AuS)2" and df.composition.iloc[0].num_atoms == 5
    assert np.isfinite(df.target).all() and (df.target >= 0).all()


def _matbench_test_file(name: str) -> Path:
    return data.matbench_validation_file().parent / "tests" / name


@pytest.mark.data
@pytest.mark.parametrize("task, fixture", [
    ("steels", "msonability_matbench_steels.json"),
    ("glass", "scores_matbench_glass_perfect.json"),
])
def test_csv_rows_are_in_matbench_order(task, fixture):
    """matbench's own test fixtures hold the true targets under matbench ids: they must match our rows."""
    df = data.load_matbench(task)
    fixture = json.loads(_matbench_test_file(fixture).read_text())
    truth = {k: v for fold in fixture["results"].values() for k, v in fold["data"].items()}
    assert len(truth) == len(df)
    assert np.allclose(df.loc[list(truth), "target"].to_numpy(), np.array(list(truth.values()), float))


@pytest.mark.data
@pytest.mark.parametrize("task", ["expt_gap", "steels", "glass", "expt_is_metal"])
def test_official_folds_partition_the_rows_and_match_matbench_kfold(task):
    df = data.load_matbench(task)
    folds = data.matbench_folds(task)
    assert len(folds) == 5
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests) == list(range(len(df)))
    for tr, te in folds:
        assert not set(tr) & set(te) and len(tr) + len(te) == len(df)
    # matbench drew the folds with a seeded KFold (regression) or StratifiedKFold on the target
    # (classification); redrawing them from our rows reproduces the same test sets.
    if task in ("glass", "expt_is_metal"):
        splitter = StratifiedKFold(5, shuffle=True, random_state=18012019).split(df, df.target)
    else:
        splitter = KFold(5, shuffle=True, random_state=18012019).split(df)
    for (_, te), (_, te_ref) in zip(folds, splitter):
        assert np.array_equal(np.sort(te), np.sort(te_ref))


def test_bad_formulas_raise_naming_the_entry():
    with pytest.raises(ValueError, match=r"row 3.*malformed formula 'Fe2O3x'"):
        data.parse_formula("Fe2O3x", entry="row 3")
    with pytest.raises(ValueError, match=r"mb-1.*'Xq2O'"):
        data.parse_formula("Xq2O", entry="mb-1")  # unknown element
    with pytest.raises(ValueError, match="empty"):
        data.parse_formula("", entry=0)
    assert data.parse_formula("Ag(AuS)2").num_atoms == 5


def test_nan_targets_raise_naming_the_entries():
    s = pd.Series([1.0, np.nan, "abc", 2.0], index=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"2 target\(s\).*'b'.*'c'"):
        data.check_targets(s)


def test_load_matbench_rejects_a_csv_with_a_nan_target(tmp_path, fake_fetch):
    bad = tmp_path / "bad.csv"
    bad.write_text("formula,target\nFe2O3,1.0\nNaCl,\n")
    fake_fetch(bad)
    with pytest.raises(ValueError, match="mb-expt-gap-2"):
        data.load_matbench("expt_gap")


def test_empty_or_overlapping_splits_raise():
    with pytest.raises(ValueError, match="fold 1.*empty"):
        data.check_folds([(np.arange(5), np.arange(5, 10)), (np.arange(10), np.array([], int))], 10)
    with pytest.raises(ValueError, match="fold 0.*both"):
        data.check_folds([(np.arange(6), np.arange(5, 10))], 10)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No shared data, empty cache and an empty $MLCOURSE_DATA_DIR: nothing is found locally."""
    monkeypatch.setattr(data, "SHARED_DATA", tmp_path / "no-shared")
    monkeypatch.setattr(data, "REPO_DATA", tmp_path / "repo-data")
    monkeypatch.setattr(data, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setenv("MLCOURSE_DATA_DIR", str(tmp_path / "datadir"))
    return tmp_path


NAME = "matbench_composition/CrabNet/data/matbench/steels_yield.csv"


def test_missing_dataset_offline_fails_fast_with_what_where_and_how(isolated):
    start = time.perf_counter()
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.fetch(NAME)
    assert time.perf_counter() - start < 5
    msg = str(err.value)
    assert NAME in msg and str(isolated / "datadir") in msg and str(isolated / "cache") in msg
    assert f"mlcourse data fetch {NAME}" in msg


def test_missing_dataset_with_unreachable_url_fails_fast(isolated, monkeypatch):
    entry = data.registry()[NAME]
    monkeypatch.setitem(data.registry(), NAME, data.Entry(NAME, entry.sha256, "http://127.0.0.1:9/x.csv", "", ""))
    start = time.perf_counter()
    with pytest.raises(data.DatasetNotFoundError, match="download from http://127.0.0.1:9/x.csv failed"):
        data.fetch(NAME, download=True)
    assert time.perf_counter() - start < 5


@pytest.mark.data
def test_corrupt_file_is_a_sha256_error(isolated):
    copy = isolated / "datadir" / NAME
    copy.parent.mkdir(parents=True)
    shutil.copy(SHARED / NAME, copy)
    assert data.fetch(NAME) == copy
    copy.write_bytes(copy.read_bytes().replace(b"1", b"2", 1))
    with pytest.raises(data.DatasetCorruptError, match="sha256"):
        data.fetch(NAME)


def test_cli_reports_a_missing_dataset_without_a_traceback(isolated, capsys):
    assert cli.main(["data", "fetch", NAME]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and NAME in err


@pytest.mark.data
def test_cli_verify_and_list(capsys):
    assert cli.main(["data", "verify"]) == 0
    assert "0 missing, 0 corrupt" in capsys.readouterr().out
    assert cli.main(["data", "list"]) == 0
    assert "mlip/mlearn/Si/test.json" in capsys.readouterr().out


@pytest.mark.data
def test_load_mlearn_gives_atoms_with_energy_and_forces():
    frames = data.load_mlearn("Si", "test")
    assert len(frames) == 25
    a = frames[0]
    assert set(a.get_chemical_symbols()) == {"Si"}
    assert a.get_forces().shape == (len(a), 3) and np.isfinite(a.get_potential_energy())


@pytest.mark.data
@pytest.mark.slow
def test_load_cdvae_perov5_and_a_malformed_cif(tmp_path, fake_fetch):
    df = data.load_cdvae("perov_5", "test")
    assert len(df) == 3785 and all(len(s) == 5 for s in df.structure.iloc[:50])
    assert {"material_id", "cif", "heat_all"} <= set(df.columns)
    head = data.load_cdvae("perovskite", "test", n=7)  # CDVAE's own name for it
    assert list(head.material_id) == list(df.material_id.iloc[:7])
    assert head.structure.iloc[6] == df.structure.iloc[6]
    bad = tmp_path / "bad.csv"
    bad.write_text(",material_id,cif,formula\n0,42,\"data_x\nnot a cif\",AB\n")
    fake_fetch(bad)
    with pytest.raises(ValueError, match="perov_5 val row 0, material_id 42: malformed CIF"):
        data.load_cdvae("perov_5", "val")


def test_load_cdvae_reads_any_cdvae_format_csv(tmp_path):
    """A Carbon-24-like file (one element, 1 to 8 atoms per cell, an energy column) written here."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Lattice, Structure

    diamond = Structure.from_spacegroup("Fd-3m", Lattice.cubic(3.57), ["C"], [[0, 0, 0]]).get_primitive_structure()
    graphite = Structure(Lattice.hexagonal(2.46, 6.71), ["C"] * 4,
                         [[0, 0, 0.25], [0, 0, 0.75], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    cells = [diamond, graphite, Structure.from_spacegroup("Fd-3m", Lattice.cubic(3.57), ["C"], [[0, 0, 0]]),
             Structure(Lattice.cubic(1.8), ["C"], [[0, 0, 0]])]
    table = pd.DataFrame({"material_id": [f"c-{i}" for i in range(len(cells))],
                          "energy_per_atom": [-154.5, -154.4, -154.5, -150.0],
                          "cif": [s.to(fmt="cif") for s in cells]})
    path = tmp_path / "train.csv"
    table.to_csv(path)  # with pandas' index column first, as CDVAE's files
    df = data.load_cdvae(path)
    assert list(df.material_id) == list(table.material_id) and list(df.energy_per_atom) == list(table.energy_per_atom)
    assert [len(s) for s in df.structure] == [2, 4, 8, 1]
    same = StructureMatcher(ltol=1e-4, stol=1e-4, angle_tol=1e-3, primitive_cell=False, scale=False)
    for got, want in zip(df.structure, cells):  # the same crystals (CIF may orient the cell differently)
        assert got.composition == want.composition and same.fit(got, want)
        np.testing.assert_allclose(got.lattice.abc, want.lattice.abc, atol=1e-6)
    assert not same.fit(df.structure[0], cells[2])  # the matcher tells diamond's two cells apart
    assert len(data.load_cdvae(str(path), n=2)) == 2  # a path as a string, first rows only
    table.loc[2, "cif"] = "data_broken\n_cell_length_a 3.0\n"
    table.to_csv(path)
    with pytest.raises(ValueError, match=r"train.csv row 2, material_id c-2: malformed CIF"):
        data.load_cdvae(path)
    table.drop(columns="cif").to_csv(path)
    with pytest.raises(ValueError, match="not a CDVAE-format CSV, it has no cif column"):
        data.load_cdvae(path)
    with pytest.raises(FileNotFoundError, match="no CDVAE-format CSV at .*missing.csv"):
        data.load_cdvae(tmp_path / "missing.csv")


def test_load_cdvae_names_the_known_datasets_and_what_is_shipped():
    with pytest.raises(ValueError, match="unknown CDVAE dataset 'perov5': known names are .*perov_5"):
        data.load_cdvae("perov5", "val")
    with pytest.raises(ValueError, match="split must be one of train, val, test, not 'training'"):
        data.load_cdvae("perov_5", "training")
    # CDVAE's name "carbon" is Carbon-24, which the kit does not ship: say so and how to read it anyway
    with pytest.raises(data.DatasetNotFoundError, match=r"carbon_24 'train' split is not shipped .*perov_5/val.*pass its path"):
        data.load_cdvae("carbon", "train")


def test_load_matbench_structures_reads_matminer_json(isolated, monkeypatch):
    """The full structure datasets come from matminer's json.gz; a small file of the same format stands in."""
    from matminer.utils.io import store_dataframe_as_json
    from pymatgen.core import Lattice, Structure

    name = "matminer/matbench_jdft2d.json.gz"
    path = isolated / "datadir" / name
    path.parent.mkdir(parents=True)
    si = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    store_dataframe_as_json(pd.DataFrame({"structure": [si], "exfoliation_en": [42.0]}), str(path), compression="gz")
    monkeypatch.setitem(data.registry(), name, data.Entry(name, data.sha256sum(path), "", "", ""))
    df = data.load_matbench_structures("jdft2d")
    assert df.structure.iloc[0] == si and df.exfoliation_en.iloc[0] == 42.0


def test_verify_fails_when_a_lessons_file_is_missing(isolated, capsys):
    assert cli.main(["data", "verify"]) == 1
    out = capsys.readouterr()
    assert "missing  mlip/mlearn/Si/test.json" in out.out and "0 of" in out.out
    assert "mlcourse data fetch" in out.err
    assert cli.main(["data", "verify", "03"]) == 1
    capsys.readouterr()
    assert cli.main(["data", "verify", "04"]) == 1  # its registered models are made here, not downloaded
    err = capsys.readouterr().err
    assert "git checkout -- data/foundation/chgnet_si_finetuned.pt" in err and "data/foundation/make_models.py" in err


def test_fetch_a_lesson_honours_offline(isolated, monkeypatch, capsys):
    import pooch

    monkeypatch.setenv("MLCOURSE_OFFLINE", "1")
    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: pytest.fail("downloaded although $MLCOURSE_OFFLINE is set"))
    assert cli.main(["data", "fetch", "03"]) == 1
    assert "$MLCOURSE_OFFLINE is set" in capsys.readouterr().err
    assert cli.main(["data", "fetch"]) == 2  # nothing named: says how, fetches nothing


def test_relative_data_dir_is_taken_from_where_it_was_set(tmp_path, monkeypatch):
    (tmp_path / "course-data").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setenv("MLCOURSE_DATA_DIR", "course-data")
    monkeypatch.setenv("PWD", str(tmp_path))          # the shell that set it (and started Jupyter) was here
    monkeypatch.chdir(tmp_path / "notebooks")          # the kernel runs in the notebook's folder
    assert data.env_data_dir() == tmp_path / "course-data"
    assert data.search_dirs()[0] == (tmp_path / "course-data", "$MLCOURSE_DATA_DIR")


def test_every_lesson_names_registered_files():
    from mlcourse import runner

    assert sorted(data.lessons()) == [p.stem for p in runner.notebooks()]
    for lesson, patterns in data.lessons().items():
        assert data.lesson_files(lesson), lesson
        for pattern in patterns:
            assert any(fnmatchcase(n, pattern) for n in data.registry()), pattern
    assert data.lesson_name("03") == data.lesson_name("notebooks/03_interatomic_potentials.ipynb") == "03_interatomic_potentials"
    with pytest.raises(KeyError, match="No lesson '99'.*00, 01"):
        data.lesson_name("99")


def test_zero_or_negative_amounts_are_errors_naming_the_element():
    with pytest.raises(ValueError, match=r"row 7.*'Fe0O3' gives Fe an amount of zero"):
        data.parse_formula("Fe0O3", entry="row 7")  # pymatgen alone reads it as O3
    with pytest.raises(ValueError, match=r"'\(FeO\)0Na' gives Fe, O an amount of zero"):
        data.parse_formula("(FeO)0Na")
    with pytest.raises(ValueError, match=r"row 8.*'Fe-1O3'.*positive"):
        data.parse_formula("Fe-1O3", entry="row 8")
    assert data.parse_formula("Fe0.5O").num_atoms == 1.5


def test_infinite_targets_raise_naming_the_entries():
    s = pd.Series([1.0, np.inf, "-inf", 2.0], index=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"2 target\(s\) are NaN, infinite.*'b' \(inf\), 'c' \('-inf'\)"):
        data.check_targets(s)
    assert data.check_targets(pd.Series([1, "2.5"])).tolist() == [1.0, 2.5]


def test_check_targets_of_several_properties_allows_missing_only_when_told():
    frame = pd.DataFrame([[1.0, np.nan], [2.0, 3.0]], index=["x", "y"])
    with pytest.raises(ValueError, match=r"entries 'x' \(\[1.0, nan\]\)"):
        data.check_targets(frame)
    assert data.check_targets(frame, allow_missing=True).shape == (2, 2)
    for row in ([np.nan, np.nan], [1.0, -np.inf]):
        with pytest.raises(ValueError, match="entries 'z'"):
            data.check_targets(pd.concat([frame, pd.DataFrame([row], index=["z"])]), allow_missing=True)


def test_load_matbench_rejects_a_csv_with_an_infinite_target(tmp_path, fake_fetch):
    bad = tmp_path / "bad.csv"
    bad.write_text("formula,target\nFe2O3,1.0\nNaCl,inf\nKCl,-inf\n")
    fake_fetch(bad)
    with pytest.raises(ValueError, match=r"2 target\(s\).*mb-expt-gap-2.*mb-expt-gap-3"):
        data.load_matbench("expt_gap")


def _mlearn_file(tmp_path, fake_fetch, **outputs):
    from pymatgen.core import Lattice, Structure

    si = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    good = {"energy": -10.8, "forces": [[0.0, 0.0, 0.1], [0.0, 0.0, -0.1]], "virial_stress": [1, 1, 1, 0, 0, 0]}
    entries = [{"structure": si.as_dict(), "group": "Ground", "outputs": good},
               {"structure": si.as_dict(), "group": "Vacancy",
                "outputs": {k: v for k, v in {**good, **outputs}.items() if v is not None}}]
    path = tmp_path / "mlearn.json"
    path.write_text(json.dumps(entries))  # json writes NaN and Infinity, as Python reads them
    return fake_fetch(path)


def test_mlearn_entry_without_forces_names_the_entry_and_what_it_needs(tmp_path, fake_fetch):
    _mlearn_file(tmp_path, fake_fetch, forces=None)
    with pytest.raises(ValueError, match=r"Si/test entry 1 \(Vacancy\): no forces; each entry needs"):
        data.load_mlearn("Si", "test")


@pytest.mark.parametrize("key, value", [("forces", [[0.0, float("nan"), 0.0], [0.0, 0.0, 0.0]]),
                                        ("forces", [[0.0, 0.0, 0.0]]), ("energy", float("inf")),
                                        ("virial_stress", [1, 1, 1, 0, 0, float("nan")])])
def test_mlearn_nan_inf_or_misshapen_labels_name_the_entry(tmp_path, fake_fetch, key, value):
    _mlearn_file(tmp_path, fake_fetch, **{key: value})
    with pytest.raises(ValueError, match=rf"Si/test entry 1 \(Vacancy\): {key} must be finite numbers of shape"):
        data.load_mlearn("Si", "test")


def test_mlearn_file_with_good_labels_loads(tmp_path, fake_fetch):
    _mlearn_file(tmp_path, fake_fetch)
    frames = data.load_mlearn("Si", "test")
    assert len(frames) == 2 and frames[1].get_forces()[0, 2] == pytest.approx(0.1)


def test_an_unshipped_element_lists_the_shipped_ones_and_the_way_to_a_file():
    assert data.mlearn_elements() == ["Ge", "Li", "Si"]
    with pytest.raises(ValueError, match=r"ships no mlearn data for 'Cu'; it ships Ge, Li, Si\. .*pass a path"):
        data.load_mlearn("Cu")
    with pytest.raises(ValueError, match="split must be 'training' or 'test'"):
        data.load_mlearn("Si", "val")


def test_a_path_is_read_as_a_file_never_as_a_registry_name(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "fetch", lambda name: pytest.fail(f"fetch({name!r}) called for a path"))
    path = _mlearn_file(tmp_path, lambda p: p)  # an mlearn-format file of one's own
    for source in (path, str(path)):
        frames = data.load_mlearn(source)
        assert len(frames) == 2 and frames[1].info["group"] == "Vacancy"
    np.testing.assert_allclose(frames[0].get_stress(), data.mlearn_stress([1, 1, 1, 0, 0, 0]))
    assert frames[0].get_stress()[0] < 0  # 1 kBar of VASP (compressive) stress is a negative ASE stress
    with pytest.raises(ValueError, match="applies to a shipped element"):
        data.load_mlearn(path, "test")
    with pytest.raises(FileNotFoundError, match=r"no file .*Si/training\.json.*shipped elements Ge, Li, Si"):
        data.load_mlearn(tmp_path / "Si" / "training.json")


@pytest.mark.parametrize("key", ["energy", "forces"])
def test_a_user_mlearn_file_without_a_label_names_the_entry(tmp_path, key):
    path = _mlearn_file(tmp_path, lambda p: p, **{key: None})
    with pytest.raises(ValueError, match=rf"mlearn\.json entry 1 \(Vacancy\): no {key}; each entry needs"):
        data.load_mlearn(path)


def _extxyz(tmp_path, n=3, **bad):
    """An extxyz file of ``n`` EMT-labelled Cu cells written with ASE; ``bad`` replaces frame 1's labels."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    frames = []
    for i in range(n):
        a = bulk("Cu", "fcc", a=3.6, cubic=True)
        a.rattle(0.05, seed=i)
        a.calc = EMT()
        labels = {"energy": a.get_potential_energy(), "forces": a.get_forces(), "stress": a.get_stress()}
        if i == 1:
            labels = {k: v for k, v in {**labels, **bad}.items() if v is not None}
        a.calc = SinglePointCalculator(a, **labels)
        frames.append(a)
    path = tmp_path / "cu.extxyz"
    write(path, frames)
    return path, frames


def test_an_extxyz_file_loads_with_its_labels_unchanged(tmp_path):
    path, frames = _extxyz(tmp_path)
    loaded = data.load_mlearn(path)
    assert len(loaded) == 3 and loaded[2].info["group"] == ""
    for a, b in zip(frames, loaded):
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-10)
        np.testing.assert_allclose(b.get_stress(), a.get_stress(), atol=1e-12)  # eV/Å³, ASE's sign: unconverted


@pytest.mark.parametrize("bad, message", [
    ({"forces": None}, "no forces"),
    ({"energy": None}, "no energy"),
    ({"stress": None}, "no stress"),
    ({"forces": np.full((4, 3), np.nan)}, r"forces must be finite numbers of shape \(4, 3\), got shape \(4, 3\) "
                                          "with NaN"),
    ({"forces": np.full((4, 3), np.inf)}, "forces must be finite numbers"),
    ({"energy": np.nan}, "energy must be finite numbers"),
])
def test_a_bad_extxyz_frame_is_named_by_its_index(tmp_path, bad, message):
    path, _ = _extxyz(tmp_path, **bad)
    with pytest.raises(ValueError, match=rf"cu\.extxyz frame 1 \(Cu4\): {message}"):
        data.load_mlearn(path)


def test_misshapen_forces_in_a_user_file_are_named_by_the_entry(tmp_path):
    path = _mlearn_file(tmp_path, lambda p: p, forces=[[0.0, 0.0, 0.0, 0.0]] * 2)
    with pytest.raises(ValueError, match=r"entry 1 \(Vacancy\): forces must be finite numbers of shape \(2, 3\), "
                                         r"got shape \(2, 4\)"):
        data.load_mlearn(path)


def test_disordered_structure_is_named_with_the_site_and_the_fix():
    from pymatgen.core import Lattice, Structure

    alloy = Structure(Lattice.cubic(3.6), ["Cu", {"Au": 0.5, "Cu": 0.5}], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match=r"structure 'mp-9' \(.*\) is disordered at site 1 \(Cu:0.5, Au:0.5\): an ordered"
                                         r".*OrderDisorderedStructureTransformation.*majority"):
        data.check_ordered(alloy, "mp-9")
    ordered = Structure(Lattice.cubic(3.6), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert data.check_ordered(ordered) is ordered


GENERATED = "cluster_expansion/cuau_emt.db"  # made by data/cluster_expansion/make_cuau_emt.py, no URL


def test_a_corrupt_generated_file_says_how_to_restore_or_regenerate_it(isolated):
    assert data.registry()[GENERATED].url == ""
    copy = isolated / "datadir" / GENERATED
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"not the database")
    with pytest.raises(data.DatasetCorruptError) as err:
        data.fetch(GENERATED)
    msg = str(err.value)
    assert f"git checkout -- data/{GENERATED}" in msg and "python data/cluster_expansion/make_cuau_emt.py" in msg
    assert f"mlcourse data fetch {GENERATED}" not in msg and "cannot replace it" in msg


def test_a_missing_generated_file_says_how_to_restore_or_regenerate_it(isolated):
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.fetch(GENERATED)
    msg = str(err.value)
    assert "no download URL" in msg and f"git checkout -- data/{GENERATED}" in msg
    assert f"mlcourse data fetch {GENERATED}" not in msg
