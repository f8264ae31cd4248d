"""Course notebooks: structure checks, and each one executed once in fast mode through the runner."""

import ast
import builtins
import json
from pathlib import Path
import re

import nbformat
import pytest

from mlcourse import colab, data, lesson, runner, student
from mlcourse.results import build_dir

NOTEBOOKS = runner.notebooks()
ids = [p.name for p in NOTEBOOKS]


def test_there_are_lessons():
    assert [p.name[:2] for p in NOTEBOOKS][:2] == ["00", "01"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_every_cell_has_its_own_id(path):
    """nbformat 4.5 notebooks need a unique id per cell (a cell added by a script often lacks one)."""
    cells = json.loads(path.read_text())["cells"]
    missing = [i for i, c in enumerate(cells) if not c.get("id")]
    assert not missing, f"{path.name}: cells {missing} have no id (nbformat.validator.normalize adds them)"
    assert len({c["id"] for c in cells}) == len(cells), f"{path.name}: two cells share an id"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_one_parameters_cell_defaulting_to_fast(path):
    nb = nbformat.read(path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert re.match(r'MODE = "fast"', params[0].source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_header_badge_and_exercises(path):
    nb = nbformat.read(path, as_version=4)
    head = nb.cells[0].source
    assert "**Time:**" in head and "**Prerequisites:**" in head and "You will learn" in head
    assert colab.launch_badges(path.name) in head, "Colab and Binder badges must open this notebook's release"
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) >= 3
    for c in solutions:
        assert c.source.startswith("# "), "a solution cell starts with the task as a comment"
        after = nb.cells[nb.cells.index(c) + 1]
        assert "check(" in after.source, "each solution is followed by its auto-check"


def _stored(tree: ast.AST) -> set[str]:
    """Names a piece of code binds: assignments, loop and with targets, imports, defs, arguments."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _loaded(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _code(cell) -> str:
    """A cell's source as Python (IPython magics and shell lines dropped)."""
    return "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_each_exercise_has_a_hint_stubs_its_answers_and_lists_wrong_answers(path):
    nb = nbformat.read(path, as_version=4)
    defined = _stored(ast.parse("\n".join(_code(c) for c in nb.cells if c.cell_type == "code"))) | {"MODE"}
    for i, j in student.exercises(nb):
        before = nb.cells[i - 1]
        assert before.cell_type == "markdown" and re.search(r"<details>\s*<summary>Hint</summary>", before.source), \
            f"{path.name} cell {i}: the cell above an exercise holds its collapsed hint"
        names = student.answer_names(nb.cells[j].source)
        assert set(names) <= _stored(ast.parse(nb.cells[i].source)), f"{path.name} cell {i}: the solution defines {names}"
        wrong = nb.cells[j].metadata.get("mlcourse", {}).get("wrong", [])
        assert wrong, f"{path.name} cell {j}: list plausible wrong answers in metadata.mlcourse.wrong"
        for w in wrong:
            assert _stored(ast.parse(w)) & set(names), f"{path.name} cell {j}: the wrong answer {w!r} sets no answer"
            unknown = _loaded(ast.parse(w)) - _stored(ast.parse(w)) - defined - set(dir(builtins))
            assert not unknown, f"{path.name} cell {j}: the wrong answer {w!r} reads {sorted(unknown)}, which the notebook never defines"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_no_cell_depends_on_an_exercise_solution(path):
    """The student copy runs to the end: only the check reads an answer, and only as check's answer.

    Every name a solution binds counts: a later cell that reads it (before binding it itself) would
    see the stub, or an older value, in the student copy.
    """
    nb = nbformat.read(path, as_version=4)
    for i, j in student.exercises(nb):
        solution_names = _stored(ast.parse(nb.cells[i].source))
        check_tree = ast.parse(nb.cells[j].source)
        answers = set(student.answer_names(nb.cells[j].source))
        answer_args = {id(c.args[1]) for c in ast.walk(check_tree) if student._is_check_call(c) and len(c.args) > 1}
        other = {n.id for n in ast.walk(check_tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                 and id(n) not in answer_args}
        assert not (other & solution_names), \
            f"{path.name} cell {j}: the check cell reads {sorted(other & solution_names)} of the solution"
        pending = solution_names - (_stored(check_tree) - answers)
        for k in range(j + 1, len(nb.cells)):
            cell = nb.cells[k]
            if cell.cell_type != "code" or "solution" in cell.metadata.get("tags", []):
                continue
            for stmt in ast.parse(_code(cell)).body:
                bad = (_loaded(stmt) - _stored(stmt)) & pending
                assert not bad, f"{path.name} cell {k} reads {sorted(bad)}, defined only by the solution in cell {i}"
                pending -= _stored(stmt)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_the_exercise_test_notebook_holds_the_student_copy_unchanged(path):
    nb = nbformat.read(path, as_version=4)
    derived = student.exercise_test_notebook(nb)
    kept = [c for c in derived.cells if student.SELF_TEST_TAG not in c.metadata.get("tags", [])]
    assert kept == student.strip_solutions(nb).cells
    assert len(derived.cells) - len(kept) == len(student.exercises(nb))


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_runs_in_fast_mode_and_records_results(path):
    """One execution per lesson: the student copy with the exercise self-tests.

    It runs every lesson cell as the instructor notebook does, shows that the student copy runs to
    the end with each check reporting "not answered yet", and runs each solution and its wrong
    answers against the check (see mlcourse.student.exercise_test_notebook).
    """
    nb = nbformat.read(path, as_version=4)
    run = runner.run_notebook(path, "fast", notebook=student.exercise_test_notebook(nb), variant="student+self-test")
    assert run["ok"], run["error"]
    out = nbformat.read(run["output"], as_version=4)
    reports = [o.get("text", "") for c in out.cells if student.SELF_TEST_TAG in c.metadata.get("tags", [])
               for o in c.outputs]
    assert len([r for r in reports if "[self-test]" in r]) == len(student.exercises(nb))
    recorded = json.loads((build_dir() / "results" / f"{path.stem}.fast.json").read_text())
    assert any(e["published"] is not None and e["source"] for e in recorded.values())
    read = set(Path(run["data_log"]).read_text().split()) if Path(run["data_log"]).exists() else set()
    unlisted = read - set(data.lesson_files(path.stem))
    assert not unlisted, f"{path.name} reads files that data/lessons.tsv does not give it: {sorted(unlisted)}"


SETTING = re.compile(r"(?<![\w.])S\.([a-z_0-9]+)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_the_lesson_starts_with_the_scaffold_and_shows_its_settings(path):
    """The cell after `parameters` calls lesson.start(MODE) and ends by showing the settings table;
    no code branches on the mode by hand; every setting the code reads is in the TOML and vice versa."""
    nb = nbformat.read(path, as_version=4)
    first = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])][0] + 1
    setup = nb.cells[first].source
    assert "lesson = start(MODE)" in setup and "S = lesson.settings" in setup
    assert setup.rstrip().endswith("lesson.table()")
    code = "\n".join(_code(c) for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"\bFAST\b|MODE ==|== MODE|if MODE", code), f"{path.name} branches on the mode by hand"
    assert not re.search(r"(?<![\w.])record\(", code), f"{path.name} records through something else than lesson.record"
    declared = set(lesson.settings_rows(path.stem))
    used = set(SETTING.findall(code))
    assert used <= declared, f"{path.name} reads settings its TOML lacks: {sorted(used - declared)}"
    assert declared <= used, f"{path.name}'s TOML has settings the notebook never reads: {sorted(declared - used)}"

