"""Student copies of the notebooks, and the exercise self-test that CI runs inside each lesson.

An exercise is three cells: a code cell tagged ``solution`` that starts with the task as ``# ``
comments, then a check cell that calls ``check(name, answer, expected)``, where every ``answer`` is a
plain variable name. Those names are the exercise's **answers**: they are read from the check cell
(:func:`answer_names`), so nothing has to be declared twice. The student copy keeps the solution's
comment lines and stubs each answer nbgrader-style (``answer = None  # YOUR CODE HERE``); the check
then reports "not answered yet" and Run All goes on.

Plausible wrong answers are listed in the check cell's metadata, ``metadata.mlcourse.wrong``: each is
a statement (``"o_fraction = 1 / 6"``) that :func:`exercise_self_test` runs after the real solution,
asserting that the check rejects it. :func:`exercise_test_notebook` is the student copy with one
such self-test cell after every check cell; the notebook test executes it instead of the instructor
notebook, so one execution covers the lesson, the student copy and every check.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import random
import sys
from pathlib import Path

import nbformat

STUB = "None  # YOUR CODE HERE"
SELF_TEST_TAG = "exercise-self-test"


class StudentCopyError(ValueError):
    """A student copy would overwrite the notebook it is made from."""


def _is_check_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "check"


def answer_names(check_source: str) -> list[str]:
    """The variable names that a check cell passes as answers (second argument of ``check``), in order.

    Raises ValueError if an answer is not a plain name or the cell calls ``check`` nowhere.
    """
    names = []
    for node in ast.walk(ast.parse(check_source)):
        if _is_check_call(node):
            arg = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "answer"), None)
            if not isinstance(arg, ast.Name):
                raise ValueError(f"the answer of a check must be a variable name: {ast.unparse(node)}")
            if arg.id not in names:
                names.append(arg.id)
    if not names:
        raise ValueError(f"not a check cell (no check(...) call):\n{check_source}")
    return names


def exercises(nb: nbformat.NotebookNode) -> list[tuple[int, int]]:
    """(solution cell index, check cell index) of every exercise of ``nb``."""
    return [(i, i + 1) for i, c in enumerate(nb.cells) if "solution" in c.metadata.get("tags", [])]


def task_lines(solution_source: str) -> list[str]:
    """The leading comment lines of a solution cell: the task, kept in the student copy."""
    head = []
    for line in solution_source.splitlines():
        if not line.startswith("#"):
            break
        head.append(line)
    return head


def stub(solution_source: str, names: list[str]) -> str:
    """The student's version of a solution cell: its task comments, then ``name = None  # YOUR CODE HERE``."""
    return "\n".join(task_lines(solution_source) + [f"{n} = {STUB}" for n in names])


def strip_solutions(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` with outputs cleared and each ``solution`` cell replaced by its stub (tag ``exercise``)."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    for i, j in exercises(nb):
        cell = nb.cells[i]
        cell.source = stub(cell.source, answer_names(nb.cells[j].source))
        cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != "solution"] + ["exercise"]
    return nb


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_destination(path: Path, out_dir: Path) -> Path:
    """Where the student copy of ``path`` goes in ``out_dir``.

    Raises StudentCopyError when ``out_dir`` is the notebook's own folder or the copy would land on
    the notebook itself (through a link, for example): that would delete its solutions.
    """
    path, out_dir = Path(path), Path(out_dir)
    out = out_dir / path.name
    if _same_file(out_dir, path.parent) or _same_file(out, path):
        raise StudentCopyError(f"refusing to write the student copy of {path} into {out_dir}: that is the folder "
                               "of the instructor notebook, whose solutions it would overwrite; choose another "
                               "--out folder (default: student)")
    return out


def write_student_copy(path: Path, out_dir: Path) -> Path:
    """Write the student copy of notebook ``path`` into ``out_dir``; return its path.

    Raises StudentCopyError, writing nothing, if that would overwrite the notebook (:func:`check_destination`).
    """
    out = check_destination(path, out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(strip_solutions(nbformat.read(path, as_version=4)), out)
    return out


# ------------------------------------------------------------------ the exercise self-test

def _rng_states():
    states = {"random": random.getstate()}
    if "numpy" in sys.modules:
        states["numpy"] = sys.modules["numpy"].random.get_state()
    if "torch" in sys.modules:
        states["torch"] = sys.modules["torch"].get_rng_state()
    return states


def _restore_rng_states(states) -> None:
    random.setstate(states["random"])
    if "numpy" in states:
        sys.modules["numpy"].random.set_state(states["numpy"])
    if "torch" in states:
        sys.modules["torch"].set_rng_state(states["torch"])


def exercise_self_test(namespace: dict, solution: str, check_source: str, wrong: list[str]) -> None:
    """Run inside a lesson right after a check cell of the student copy.

    Asserts that the check has just reported "not answered yet", then, in a copy of ``namespace``
    (the notebook's globals, so nothing leaks into later cells), that the real ``solution`` passes
    the check and that every statement of ``wrong`` makes it raise. The random states of ``random``,
    NumPy's global generator and torch are restored afterwards, so later cells draw the same numbers
    as in the instructor notebook's run without the exercise.
    """
    from . import check as checks

    seen, checks.history[:] = list(checks.history), []
    names = answer_names(check_source)
    assert seen and all(status == "unanswered" for _, status in seen), \
        f"the check of {names} should have reported 'not answered yet', got {seen}"
    states = _rng_states()
    try:
        ns = dict(namespace)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(solution, "<solution>", "exec"), ns)
                exec(compile(check_source, "<check>", "exec"), ns)
        except AssertionError as exc:
            raise AssertionError(f"the solution does not pass its own check: {exc}") from exc
        assert checks.history and all(s == "correct" for _, s in checks.history), \
            f"the solution does not pass its own check: {checks.history}"
        for statement in wrong:
            checks.history.clear()
            trial = dict(ns)
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(statement, "<wrong answer>", "exec"), trial)
                    exec(compile(check_source, "<check>", "exec"), trial)
            except AssertionError:
                if ("wrong" in {s for _, s in checks.history}):
                    continue
                raise
            raise AssertionError(f"the check of {names} accepts the wrong answer `{statement}`")
    finally:
        checks.history.clear()
        _restore_rng_states(states)
    print(f"[self-test] {', '.join(names)}: the solution passes; {len(wrong)} wrong answer(s) rejected")


def _self_test_cell(solution: str, check_source: str, wrong: list[str]) -> nbformat.NotebookNode:
    src = ("__import__('mlcourse.student', fromlist=['_']).exercise_self_test(\n"
           f"    globals(), {solution!r},\n    {check_source!r},\n    {list(wrong)!r})")
    cell = nbformat.v4.new_code_cell(src)
    cell.metadata["tags"] = [SELF_TEST_TAG]
    return cell


def exercise_test_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student copy of ``nb`` with an exercise self-test cell (tag ``exercise-self-test``) after each check.

    Removing those cells gives back :func:`strip_solutions` (``nb``) exactly.
    """
    student = strip_solutions(nb)
    after_check = {j: _self_test_cell(nb.cells[i].source, nb.cells[j].source,
                                      nb.cells[j].metadata.get("mlcourse", {}).get("wrong", []))
                   for i, j in exercises(nb)}
    student.cells = [c for k, cell in enumerate(student.cells) for c in [cell, after_check.get(k)] if c is not None]
    return student
