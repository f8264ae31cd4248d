"""The lesson scaffold: which lesson runs, its settings table, seeding, recording under its name."""

import random

import numpy as np
import pytest

from mlcourse import lesson, results


@pytest.fixture
def course(tmp_path, monkeypatch):
    """A notebooks folder with lessons 01_x (settings in 01_x.toml) and 02_y (no TOML), and a build folder."""
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    for name in ("01_x.ipynb", "02_y.ipynb", "README.ipynb"):
        (nb_dir / name).write_text("{}")
    (nb_dir / "01_x.toml").write_text(
        '[settings]\nn_train = { fast = 30, full = "all", note = "structures to train on" }\n'
        'epochs = { fast = 5, full = 50, note = "training epochs" }\n'
        'live = { fast = false, full = true, note = "run it here" }\n\n[expected.fast]\n"mae" = { value = 0.5 }\n')
    monkeypatch.setattr(lesson, "NOTEBOOK_DIR", nb_dir)
    monkeypatch.setattr(results, "NOTEBOOK_DIR", nb_dir)
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(tmp_path / "build"))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.delenv("COLAB_JUPYTER_IP", raising=False)
    return nb_dir


def test_lessons_are_the_numbered_notebooks(course):
    assert lesson.lessons() == ["01_x", "02_y"]


@pytest.mark.parametrize("name, found", [
    ("/home/me/kit/notebooks/01_x.ipynb", "01_x"), ("01_x.ipynb", "01_x"), ("Copy of 02_y.ipynb", "02_y"),
    ("02_y (1).ipynb", "02_y"), ("101_x.ipynb", None), ("01_xy.ipynb", None), ("notes.ipynb", None)])
def test_lesson_of_finds_the_lesson_in_a_path_or_title(course, name, found):
    assert lesson.lesson_of(name) == found


def test_detect_reads_the_session_name_jupyter_server_sets(course, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", str(course / "02_y.ipynb"))
    assert lesson.detect() == "02_y"


def test_detect_says_how_to_name_the_lesson_when_it_cannot_tell(course, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "/tmp/untitled.ipynb")
    with pytest.raises(lesson.LessonNotFoundError, match=r"untitled\.ipynb.*start\(MODE, lesson=.*01_x, 02_y"):
        lesson.detect()


def test_settings_of_each_mode_with_all_read_as_none(course):
    fast, full = lesson.settings("01_x", "fast"), lesson.settings("01_x", "full")
    assert (fast.n_train, fast.epochs, fast.live) == (30, 5, False)
    assert (full.n_train, full.epochs, full.live) == (None, 50, True)
    assert vars(lesson.settings("02_y", "fast")) == {}
    with pytest.raises(ValueError, match="'fast' or 'full'"):
        lesson.settings("01_x", "quick")


@pytest.mark.parametrize("entry", ['n = 5', 'n = { fast = 5, note = "x" }', 'n = { fast = 5, full = 6 }'])
def test_a_malformed_setting_names_the_file_and_the_entry(course, entry):
    (course / "01_x.toml").write_text(f"[settings]\n{entry}\n")
    with pytest.raises(results.ExpectationError, match=r"01_x\.toml: setting 'n' must be"):
        lesson.settings("01_x", "fast")


def test_the_table_shows_both_modes_and_marks_this_one(course):
    table = lesson.settings_table("01_x", "full")
    assert list(table.columns) == ["fast", "full (this run)", "what it sets"]
    assert table.loc["n_train"].tolist() == ["30", "all", "structures to train on"]


def test_start_seeds_names_the_lesson_and_records_under_it(course, monkeypatch, capsys):
    monkeypatch.setenv("JPY_SESSION_NAME", str(course / "01_x.ipynb"))
    a = lesson.start("fast", seed=3)
    draws = (random.random(), np.random.rand())
    lesson.start("fast", seed=3)
    assert (random.random(), np.random.rand()) == draws
    assert "Lesson 01_x, fast mode, seed 3" in capsys.readouterr().out
    assert (a.name, a.mode, a.settings.epochs) == ("01_x", "fast", 5)
    a.record("mae", 0.25, "eV")
    assert results.recorded()["01_x", "fast"]["mae"]["value"] == 0.25


def test_start_seeds_and_threads_torch_when_it_is_loaded(course):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    try:
        lesson.start("fast", lesson="01_x", seed=1)
        x = torch.rand(3)
        assert torch.get_num_threads() == lesson.FAST_THREADS
        lesson.start("fast", lesson="01_x", seed=1)
        assert torch.equal(torch.rand(3), x)
    finally:
        torch.set_num_threads(threads)


def test_start_refuses_an_unknown_mode_or_lesson(course):
    with pytest.raises(ValueError, match="MODE must be"):
        lesson.start("slow", lesson="01_x")
    with pytest.raises(lesson.LessonNotFoundError, match="no lesson '03_z'"):
        lesson.start("fast", lesson="03_z")


def test_scripts_read_settings_their_lesson_declares():
    """The scripts that make registered files read the lesson's table, not their own copy of it."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readers = {}
    for path in [*root.glob("scripts/*.py"), *root.glob("data/*/*.py")]:
        m = re.search(r'S = lesson\.settings\("([0-9]{2}_[a-z_0-9]+)", "(fast|full)"\)', path.read_text())
        if m:
            readers[path.name] = (m[1], set(re.findall(r"(?<![\w.])S\.([a-z_0-9]+)", path.read_text())))
    assert {"make_models.py", "make_checkpoints.py", "tl_pairwise_full.py", "train_perov5_checkpoint.py"} <= set(readers)
    for name, (lesson_name, used) in readers.items():
        missing = used - set(lesson.settings_rows(lesson_name))
        assert used and not missing, f"{name} reads settings {sorted(missing)} that {lesson_name}.toml lacks"
