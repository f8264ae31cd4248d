import nbformat
import pytest

from mlcourse import cli, runner
from mlcourse.check import check
from mlcourse.student import strip_solutions


def test_check_passes_and_fails():
    check("ok", 0.5, 0.5004)
    check("array", [1.0, 2.0], [1.0, 2.0])
    check("text", "Fm-3m", "Fm-3m")
    with pytest.raises(AssertionError, match="not the expected"):
        check("wrong", 0.6, 0.5)
    with pytest.raises(AssertionError, match="no answer"):
        check("empty", None, 0.5)
    with pytest.raises(AssertionError):
        check("shape", [1.0, 2.0], [1.0, 2.0, 3.0])


def test_strip_solutions_keeps_the_task_and_drops_the_code():
    nb = nbformat.v4.new_notebook()
    sol = nbformat.v4.new_code_cell("# Exercise 1: x = 2 + 2\nx = 4")
    sol.metadata["tags"] = ["solution"]
    sol.outputs = [nbformat.v4.new_output("stream", text="4")]
    nb.cells = [sol, nbformat.v4.new_code_cell("check('Exercise 1', x, 4)")]
    out = strip_solutions(nb)
    assert out.cells[0].source == "# Exercise 1: x = 2 + 2\n# YOUR CODE HERE"
    assert out.cells[0].outputs == [] and "solution" not in out.cells[0].metadata["tags"]
    assert out.cells[1].source == nb.cells[1].source
    assert nb.cells[0].source.endswith("x = 4")  # the input notebook is untouched


def test_mlcourse_student_writes_copies_without_solutions(tmp_path):
    assert cli.main(["student", "--out", str(tmp_path)]) == 0
    for path in runner.notebooks():
        copy = nbformat.read(tmp_path / path.name, as_version=4)
        tags = [t for c in copy.cells for t in c.metadata.get("tags", [])]
        assert "solution" not in tags and tags.count("exercise") >= 3
