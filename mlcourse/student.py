"""Student copies of the notebooks: solution cells emptied, outputs cleared."""

from __future__ import annotations

from pathlib import Path

import nbformat


def strip_solutions(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` where each cell tagged ``solution`` keeps only its leading comment lines.

    Those comments state the task; the student writes the code below them.
    """
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if "solution" in cell.get("metadata", {}).get("tags", []):
            lines = cell.source.splitlines()
            head = []
            for line in lines:
                if not line.startswith("#"):
                    break
                head.append(line)
            cell.source = "\n".join(head + ["# YOUR CODE HERE"])
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != "solution"] + ["exercise"]
    return nb


def write_student_copy(path: Path, out_dir: Path) -> Path:
    """Write the student copy of notebook ``path`` into ``out_dir``; return its path."""
    out = Path(out_dir) / Path(path).name
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(strip_solutions(nbformat.read(path, as_version=4)), out)
    return out
