"""The course website (``make site``): the lessons ``make course`` executed, rendered by Sphinx with myst-nb.

Nothing here executes a notebook. :func:`build` assembles the pages into ``build/site-src/``: the landing
page (lesson table with times and launch buttons), one page per executed lesson (``build/fast/``), the
results of that run beside the published values, the full-mode records (docs/RESULTS.md), the instructor
and workshop notes and the set-up page (README sections); then Sphinx writes ``build/site/``, a static
site that reads offline (MathJax and the 3D viewer's JavaScript come from wheels, not from a CDN).

On the pages, a widget cannot run (no kernel): a chemiscope 3D view (``plots.structure_view``) becomes
the same viewer drawn from its data inline in the page, and a tqdm progress bar becomes its final line.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path

import nbformat

from . import colab, results, runner, student

KIT = Path(__file__).resolve().parent.parent
SITE_SOURCE = KIT / "docs" / "site"  # committed: Sphinx's conf.py, the landing text, css and the 3D loader
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
CHEMISCOPE = "chemiscope.widget."  # how anywidget names chemiscope's widget classes (_anywidget_id)
# Pages of the repository that the site carries, by their path in the repository; other relative links
# of the Markdown it copies point at the file on GitHub, at this release.
PAGES = {"docs/RESULTS.md": "full-mode.md", "docs/workshop.md": "workshop.md", "README.md": "setup.md"}


class SiteError(RuntimeError):
    """The site cannot be built from what is there (no executed lesson, a lesson page that lost its badges)."""


def lesson_facts(nb: nbformat.NotebookNode) -> dict[str, str]:
    """Title and time (minutes, as the lesson's first cell states them) of a lesson notebook."""
    first = nb.cells[0].source
    title = re.search(r"^# (.+)$", first, re.M)
    minutes = re.search(r"\*\*Time:\*\* about (\d+) minutes", first)
    if not (title and minutes):
        raise SiteError("a lesson's first cell starts with '# Lesson NN — title' and states "
                        "'**Time:** about N minutes'; this one does not:\n" + first[:300])
    return {"title": title.group(1), "minutes": minutes.group(1)}


def launch_buttons(notebook: str, student_copy: str | None = None) -> str:
    """HTML links (no remote badge images, so they render offline) that open ``notebook`` on Colab or
    Binder, and download its student copy (a path relative to the page)."""
    links = [f'<a class="mlcourse-launch-{k.lower()}" href="{html.escape(url)}">Open in {k}</a>'
             for k, url in colab.launch_urls(notebook).items()]
    if student_copy:
        links.append(f'<a class="mlcourse-student" href="{html.escape(student_copy)}" download>Student copy (.ipynb)</a>')
    return '<div class="mlcourse-launch">' + " ".join(links) + "</div>"


def _chemiscope_html(view_id: str, state: dict, first: bool) -> str:
    """A chemiscope widget's saved state as a page fragment that draws the same viewer without a kernel."""
    data = json.loads(state["value"])
    if data["structures"] and "data" in data["structures"][0]:
        raise SiteError("a chemiscope view in this lesson keeps its structures in the kernel "
                        "(cache_structures=True): make it with mlcourse.plots.structure_view")
    dataset = json.dumps(data).replace("</", "<\\/")  # inline JSON must not close its script element
    head = ('<link rel="stylesheet" href="../_static/chemiscope/chemiscope-sphinx.css">'
            '<script src="../_static/chemiscope/chemiscope.min.js"></script>'
            '<script src="../_static/chemiscope/chemiscope-sphinx.js"></script>'
            '<script src="../_static/mlcourse-3d.js"></script>') if first else ""
    return (f'{head}<div class="mlcourse-3d" id="{view_id}"></div>'
            f'<script type="application/json" id="{view_id}-data">{dataset}</script>'
            f'<script>mlcourseView("{view_id}", "{state["mode"]}");</script>')


def _widget_text(model_id: str, states: dict) -> str:
    """The text a widget showed last: a tqdm bar's description, bar and counts; else its values."""
    state = states.get(model_id, {}).get("state", {})
    if "children" in state:
        return " ".join(t for t in (_widget_text(c.removeprefix("IPY_MODEL_"), states) for c in state["children"]) if t)
    if state.get("_model_name") == "FloatProgressModel" and state.get("max"):
        done = round(20 * state["value"] / state["max"])
        return "█" * done + "·" * (20 - done)
    return html.unescape(re.sub(r"<[^>]+>", "", str(state.get("value", "")))).replace("\xa0", " ").strip()


def static_outputs(nb: nbformat.NotebookNode, lesson: str) -> nbformat.NotebookNode:
    """``nb`` with every widget output replaced by what a static page can show (see the module docstring);
    the saved widget state is dropped. Raises SiteError naming a widget whose state was not saved."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # a copy
    states = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    views = 0
    for cell in nb.cells:
        for i, out in enumerate(cell.get("outputs", [])):
            if WIDGET_VIEW not in out.get("data", {}):
                continue
            model_id = out["data"][WIDGET_VIEW]["model_id"]
            if model_id not in states:
                raise SiteError(f"{lesson}: a widget output ({model_id}) has no saved state; execute the "
                                "lesson with `mlcourse run`, which saves it")
            state = states[model_id]["state"]
            if str(state.get("_anywidget_id", "")).startswith(CHEMISCOPE):
                content = {"text/html": _chemiscope_html(f"view-{lesson[:2]}-{views}", state, views == 0)}
                views += 1
            else:
                content = {"text/plain": _widget_text(model_id, states)}
            cell.outputs[i] = nbformat.v4.new_output("display_data", data=content)
    return nb


def lesson_page(executed: Path, student_href: str) -> nbformat.NotebookNode:
    """The page of one executed lesson: static outputs, and launch buttons in place of its badges."""
    nb = nbformat.read(executed, as_version=4)
    name = executed.name
    badges = colab.launch_badges(name)
    if badges not in nb.cells[0].source:
        raise SiteError(f"{name}: its first cell lacks the launch badges of this release "
                        "(python -m mlcourse.colab --write-cells writes them)")
    nb.cells[0].source = nb.cells[0].source.replace(badges, launch_buttons(name, student_href))
    for cell in nb.cells:  # solutions stay on the page, folded: a reader opens one after trying the exercise
        tags = cell.metadata.get("tags", [])
        if "solution" in tags:
            cell.metadata["tags"] = tags + ["hide-input"]
    return static_outputs(nb, executed.stem)


def site_path(repo_path: str) -> str | None:
    """Where a file of the repository is on the site (``PAGES``, the lessons, the instructor notes), or None."""
    if repo_path in PAGES:
        return PAGES[repo_path]
    if re.fullmatch(r"notebooks/\d\d_\w+\.ipynb", repo_path):
        return "lessons/" + Path(repo_path).name
    if re.fullmatch(r"docs/instructor/[\w.-]+\.md", repo_path):
        return "instructor/" + Path(repo_path).name
    return None


def repo_links(markdown: str, page: str) -> str:
    """Relative links of Markdown copied from the repository file ``page``, pointed at the site's own page
    for the files the site carries (:func:`site_path`) and at the file on GitHub, at this release, for
    the others. Links with a scheme and anchors within the page stay as they are."""
    here = Path(page).parent
    depth = "../" * (len(Path(site_path(page) or page).parts) - 1)

    def target(m: re.Match) -> str:
        text, link = m.group(1), m.group(2)
        if re.match(r"[a-z]+:|#", link):
            return m.group(0)
        path, _, anchor = link.partition("#")
        repo_path = os.path.normpath(here / path)
        on_site = site_path(repo_path)
        new = (depth + on_site if on_site
               else f"https://github.com/{colab.REPOSITORY}/blob/{colab.RELEASE}/{repo_path}")
        return f"[{text}]({new}{'#' + anchor if anchor else ''})"

    return re.sub(r"\[([^\]]*)\]\(([^)\s]+)\)", target, markdown)


def _readme_setup() -> str:
    """The set-up page: the README's sections from "Setup" up to "The `mlcourse` command"."""
    readme = (KIT / "README.md").read_text()
    start, end = readme.index("## Setup: two commands"), readme.index("## The `mlcourse` command")
    return "# Set-up: locally, on Colab, on Binder\n\n" + repo_links(readme[start:end], "README.md")


def _landing(lessons: list[tuple[str, dict[str, str]]]) -> str:
    """The landing page: docs/site/index.md with its lesson table filled in, and the site's contents."""
    rows = ["| lesson | time | open |", "|---|---|---|"]
    for name, facts in lessons:
        rows.append(f"| [{facts['title']}](lessons/{name}) | {facts['minutes']} min | "
                    + launch_buttons(name, f"student/{name}") + " |")
    text = (SITE_SOURCE / "index.md").read_text().replace("{{ lesson_table }}", "\n".join(rows))
    toc = ["", "```{toctree}", ":caption: Lessons", ":hidden:", "", *(f"lessons/{n}" for n, _ in lessons), "```",
           "", "```{toctree}", ":caption: Course", ":hidden:", "", "setup", "results", "full-mode", "workshop",
           "instructor/index", "```", ""]
    return text + "\n".join(toc)


def _results_page() -> str:
    rows = results.table("fast")
    if rows.empty:
        raise SiteError("no fast-mode results are recorded: run `make course` first")
    return ("# Results of this build\n\nEvery metric the lessons recorded in the fast-mode run this site was built "
            "from, beside the published value and its source (`mlcourse results --markdown`). Fast mode trains "
            "for minutes on 2 CPU cores, so a ratio far from 1 is expected where a lesson says so; the "
            "[full-mode records](full-mode.md) reproduce the published numbers.\n\n"
            + results.format_table(rows, markdown=True) + "\n")


def executed_lessons(executed_dir: Path) -> list[Path]:
    """The lessons as ``make course`` executed them into ``executed_dir`` (``build/<mode>/``), checked
    against the run records beside it: each ran to the end, as the instructor notebook (``make test``
    runs the student copies with their self-tests into the same place: those are not the lesson pages)."""
    runs = results.read_json(executed_dir.parent / f"runs.{executed_dir.name}.json") or {}
    paths, wrong = [], []
    for lesson in runner.notebooks():
        run = runs.get(lesson.name)
        if run is None or not (executed_dir / lesson.name).exists():
            wrong.append(f"{lesson.name}: not executed")
        elif not run["ok"]:
            wrong.append(f"{lesson.name}: its last run failed ({run['error'][:200]})")
        elif run["variant"] != "instructor":
            wrong.append(f"{lesson.name}: last executed as the {run['variant']} copy")
        paths.append(executed_dir / lesson.name)
    if wrong:
        raise SiteError(f"the site needs every lesson executed by `make course` in {executed_dir}:\n  "
                        + "\n  ".join(wrong))
    return paths


def assemble(executed_dir: Path, src: Path) -> list[Path]:
    """Write the site's sources into ``src`` (emptied first); return the lesson pages written."""
    executed = executed_lessons(executed_dir)
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(SITE_SOURCE, src)
    import chemiscope
    import jupyter_server_mathjax

    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", src / "_static" / "mathjax")
    (src / "_static" / "chemiscope").mkdir()
    for name in ("chemiscope.min.js", "chemiscope-sphinx.js", "chemiscope-sphinx.css"):
        shutil.copy(Path(chemiscope.__file__).parent / "sphinx" / "static" / name, src / "_static" / "chemiscope")
    pages, facts = [], []
    (src / "lessons").mkdir()
    for path in executed:
        student.write_student_copy(KIT / "notebooks" / path.name, src / "_extra" / "student")
        page = src / "lessons" / path.name
        nb = lesson_page(path, f"../student/{path.name}")
        nbformat.write(nb, page)
        pages.append(page)
        facts.append((path.name, lesson_facts(nb)))  # its first cell keeps the title and time
    (src / "index.md").write_text(_landing(facts))
    (src / "results.md").write_text(_results_page())
    (src / "setup.md").write_text(_readme_setup())
    for repo_path, page in PAGES.items():
        if repo_path.startswith("docs/"):
            (src / page).write_text(repo_links((KIT / repo_path).read_text(), repo_path))
    notes = sorted((KIT / "docs" / "instructor").glob("*.md"))
    (src / "instructor").mkdir()
    for note in notes:
        (src / "instructor" / note.name).write_text(repo_links(note.read_text(), f"docs/instructor/{note.name}"))
    (src / "instructor" / "index.md").write_text(
        "# Instructor notes\n\nOne page per lesson: timing, where students get stuck, what to say about the "
        "numbers.\n\n```{toctree}\n:maxdepth: 1\n\n" + "\n".join(n.stem for n in notes) + "\n```\n")
    return pages


def build(executed_dir: Path | None = None, out: Path | None = None) -> Path:
    """Build the website from the executed lessons into ``out`` (default ``build/site``); return ``out``.
    Sphinx warnings are errors: a broken link or a missing page stops the build."""
    from sphinx.cmd.build import build_main

    executed_dir = executed_dir or results.build_dir() / "fast"
    out = out or results.build_dir() / "site"
    src = out.parent / "site-src"
    assemble(executed_dir, src)
    os.environ.update(MLCOURSE_REPOSITORY=colab.REPOSITORY, MLCOURSE_RELEASE=colab.RELEASE)
    if out.exists():
        shutil.rmtree(out)
    code = build_main(["-b", "html", "-W", "--keep-going", "-q", "-d", str(out.parent / "site-doctrees"),
                       str(src), str(out)])
    if code:
        raise SiteError(f"Sphinx stopped with warnings (above); sources in {src}")
    return out
