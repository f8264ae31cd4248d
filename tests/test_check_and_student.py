import os
import random

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from mlcourse import check as checks
from mlcourse import cli, runner, student
from mlcourse.check import check, same
from mlcourse.student import StudentCopyError, answer_names, exercise_self_test, strip_solutions, write_student_copy


@pytest.fixture(autouse=True)
def _clean_history():
    checks.history.clear()
    yield
    checks.history.clear()


def test_numbers_and_arrays_within_tolerance():
    assert check("ok", 0.5, 0.5004)
    assert check("array", [1.0, 2.0], [1.0, 2.0])
    assert check("numpy scalar", np.float64(3.0), 3)
    with pytest.raises(AssertionError, match="not the expected"):
        check("wrong", 0.6, 0.5)
    with pytest.raises(AssertionError):
        check("shape", [1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(AssertionError):
        check("tolerance", 0.0, 1e-5, atol=1e-6)


@pytest.mark.parametrize("empty", [None, ...])
def test_an_unanswered_exercise_is_reported_not_raised(empty, capsys):
    assert check("Exercise 7", empty, 0.5) is None
    assert "Exercise 7: not answered yet" in capsys.readouterr().out
    assert checks.history == [("Exercise 7", "unanswered")]


def test_the_failure_message_points_at_the_hint():
    with pytest.raises(AssertionError, match="Hint"):
        check("Exercise 1", 1, 2)
    assert checks.history == [("Exercise 1", "wrong")]


def test_strings_and_arrays_of_strings():
    assert check("text", "Fm-3m", "Fm-3m")
    assert check("text with spaces", " SrTiO3", "SrTiO3")
    for wrong in ["Pm-3m", 0.5, ["Fm-3m"]]:
        assert not same(wrong, "Fm-3m")
    assert not same("0.5", 0.5)  # a string that looks like the number is still a string
    assert check("species", np.array(["Sr", "Ti", "O"]), np.array(["Sr", "Ti", "O"]))
    assert check("species list", ["Sr", "Ti", "O"], np.array(["Sr", "Ti", "O"]))
    with pytest.raises(AssertionError):  # no "truth value of an array is ambiguous"
        check("species", np.array(["Sr", "Ti", "S"]), np.array(["Sr", "Ti", "O"]))
    assert not same(np.array(["1", "2"]), np.array([1, 2]))


def test_lists_tuples_and_dicts_of_mixed_types():
    assert check("pair", ("fe", 12.3456), ["fe", 12.3457])
    assert not same(("bg", 12.3456), ("fe", 12.3456))
    assert not same(("fe", 13.0), ("fe", 12.3456))
    assert not same([1, 2], [1, 2, 3]) and not same([[1, 2], [3]], [[1, 2], [3, 4]])
    assert same([[1, 2], [3]], [[1, 2], [3]])  # ragged nesting
    assert same({"a": 1.0, "b": "x"}, {"b": "x", "a": 1.00001}) and not same({"a": 1.0}, {"a": 1.0, "b": 2})
    assert same(True, True) and not same(False, True)


def test_pandas_series_and_dataframes():
    df = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}, index=["p", "q"])
    assert check("frame", df.copy(), df)
    assert not same(df.assign(a=[1.0, 2.5]), df)
    assert not same(df.rename(index={"q": "r"}), df)
    s = pd.Series([0.1, 0.2], index=["fe", "bg"])
    assert check("series", s * (1 + 1e-6), s)
    assert check("series against array", s, np.array([0.1, 0.2]))
    assert not same(s.iloc[::-1], s)
    assert not same(s, df)
    with pytest.raises(AssertionError):
        check("frame", df.a, df)


def test_numpy_and_torch_alike():
    t = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    a = np.array([1.0, 2.0, 3.0])
    assert check("torch answer", t, a)
    assert check("numpy answer", a, t)
    assert check("both torch", t * 1, t.detach())
    assert check("torch scalar", torch.tensor(2.0), 2.0)
    with pytest.raises(AssertionError):
        check("torch wrong", t + 1, a)
    with pytest.raises(AssertionError):
        check("torch shape", t[:2], a)


def test_a_comparison_that_cannot_be_made_is_a_wrong_answer():
    class Odd:
        def __eq__(self, other):
            raise TypeError("no")

    with pytest.raises(AssertionError):
        check("odd", Odd(), 1.0)


def _toy_notebook():
    nb = nbformat.v4.new_notebook()
    sol = nbformat.v4.new_code_cell("# Exercise 1: x = 2 + 2 and y = 'four'\nx = 4\ny = 'four'\ntmp = 1")
    sol.metadata["tags"] = ["solution"]
    sol.outputs = [nbformat.v4.new_output("stream", text="4")]
    chk = nbformat.v4.new_code_cell("check('Exercise 1', x, 4)\ncheck('Exercise 1b', y, 'four')")
    chk.metadata["mlcourse"] = {"wrong": ["x = 5", "y = 'five'"]}
    nb.cells = [nbformat.v4.new_markdown_cell("<details><summary>Hint</summary>2 + 2</details>"), sol, chk,
                nbformat.v4.new_code_cell("z = 1")]
    return nb


def test_answer_names_come_from_the_check_cell():
    assert answer_names("check('a', x, 4)\ncheck('b', answer=y, expected=2)\ncheck('c', x, 5)") == ["x", "y"]
    with pytest.raises(ValueError, match="variable name"):
        answer_names("check('a', x.numpy(), 4)")
    with pytest.raises(ValueError, match="not a check cell"):
        answer_names("print(1)")


def test_strip_solutions_keeps_the_task_and_stubs_every_answer():
    nb = _toy_notebook()
    out = strip_solutions(nb)
    assert out.cells[1].source == "# Exercise 1: x = 2 + 2 and y = 'four'\nx = None  # YOUR CODE HERE\ny = None  # YOUR CODE HERE"
    assert out.cells[1].outputs == [] and out.cells[1].metadata["tags"] == ["exercise"]
    assert out.cells[2].source == nb.cells[2].source
    assert nb.cells[1].source.endswith("tmp = 1")  # the input notebook is untouched


def test_the_stubs_make_every_check_report_not_answered(capsys):
    out = strip_solutions(_toy_notebook())
    ns = {"check": check}
    exec(out.cells[1].source, ns)
    exec(out.cells[2].source, ns)
    assert checks.history == [("Exercise 1", "unanswered"), ("Exercise 1b", "unanswered")]


def test_exercise_self_test_runs_the_solution_apart_and_rejects_the_wrong_answers(capsys):
    nb = _toy_notebook()
    ns = {"check": check}
    exec(strip_solutions(nb).cells[1].source, ns)
    exec(nb.cells[2].source, ns)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    expected = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    solution = nb.cells[1].source + "\nimport random; random.random(); np.random.rand(); torch.rand(1)"
    exercise_self_test(ns | {"np": np, "torch": torch}, solution, nb.cells[2].source, ["x = 5", "y = 'five'"])
    assert "2 wrong answer(s) rejected" in capsys.readouterr().out
    assert ns["x"] is None and "tmp" not in ns  # nothing of the solution leaks
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected  # random states restored
    assert checks.history == []


def test_exercise_self_test_fails_when_a_check_accepts_a_wrong_answer():
    nb = _toy_notebook()
    ns = {"check": check, "x": None, "y": None}
    with pytest.raises(AssertionError, match="should have reported 'not answered yet'"):
        exercise_self_test(ns, nb.cells[1].source, nb.cells[2].source, ["x = 5"])
    exec(nb.cells[2].source, ns)
    with pytest.raises(AssertionError, match="accepts the wrong answer `x = 4.0`"):
        exercise_self_test(ns, nb.cells[1].source, nb.cells[2].source, ["x = 4.0"])
    exec(nb.cells[2].source, ns)
    with pytest.raises(AssertionError, match="does not pass its own check"):
        exercise_self_test(ns, "x = 3\ny = 'four'", nb.cells[2].source, [])


def test_the_exercise_test_notebook_is_the_student_copy_plus_self_test_cells():
    nb = _toy_notebook()
    derived = student.exercise_test_notebook(nb)
    tags = [c.metadata.get("tags", []) for c in derived.cells]
    assert [student.SELF_TEST_TAG in t for t in tags] == [False, False, False, True, False]
    kept = [c for c, t in zip(derived.cells, tags) if student.SELF_TEST_TAG not in t]
    assert kept == strip_solutions(nb).cells


@pytest.mark.slow
def test_the_exercise_test_notebook_runs_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(tmp_path / "build"))
    nb = _toy_notebook()
    params = nbformat.v4.new_code_cell('MODE = "fast"\nfrom mlcourse.check import check')
    params.metadata["tags"] = ["parameters"]
    nb.cells.insert(0, params)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    run = runner.run_notebook(path, "fast", notebook=student.exercise_test_notebook(nb), variant="student")
    assert run["ok"], run["error"]
    assert run["notebook"] == "nb.ipynb" and run["variant"] == "student"
    out = nbformat.read(run["output"], as_version=4)
    text = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.outputs)
    assert "Exercise 1: not answered yet" in text and "2 wrong answer(s) rejected" in text
    nb.cells[3].metadata["mlcourse"]["wrong"] = ["x = 4"]  # the check cannot reject the right answer
    run = runner.run_notebook(path, "fast", notebook=student.exercise_test_notebook(nb), variant="student")
    assert not run["ok"] and "accepts the wrong answer" in run["error"]


def test_mlcourse_student_writes_copies_without_solutions(tmp_path):
    assert cli.main(["student", "--out", str(tmp_path)]) == 0
    for path in runner.notebooks():
        copy = nbformat.read(tmp_path / path.name, as_version=4)
        tags = [t for c in copy.cells for t in c.metadata.get("tags", [])]
        assert "solution" not in tags and tags.count("exercise") >= 3


def test_mlcourse_student_refuses_to_overwrite_its_sources(tmp_path, capsys):
    nb_dir = runner.NOTEBOOK_DIR
    before = {p: p.read_bytes() for p in runner.notebooks()}
    assert cli.main(["student", "--out", str(nb_dir)]) == 2
    assert "refusing" in capsys.readouterr().err
    assert cli.main(["student", "--out", str(nb_dir / ".." / "notebooks")]) == 2
    link = tmp_path / "link"
    os.symlink(nb_dir, link)
    assert cli.main(["student", "--out", str(link)]) == 2
    assert {p: p.read_bytes() for p in runner.notebooks()} == before
    one = runner.notebooks()[0]
    os.symlink(one, tmp_path / one.name)  # a link to the notebook itself in another folder
    with pytest.raises(StudentCopyError):
        write_student_copy(one, tmp_path)
    assert one.read_bytes() == before[one]
