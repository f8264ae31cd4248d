"""How the website is assembled from executed lessons (mlcourse.site), without Sphinx or a browser;
and the 3D view it renders (plots.structure_view). The built site itself: tests/test_site.py."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pytest
from ase.build import bulk

from mlcourse import colab, migration, plots, results, runner, site


def _notebook(outputs: list, states: dict) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = outputs
    nb.cells = [cell]
    nb.metadata["widgets"] = {site.WIDGET_STATE: {"state": states, "version_major": 2, "version_minor": 0}}
    return nb


def _view(model_id: str) -> dict:
    return nbformat.v4.new_output("display_data", data={site.WIDGET_VIEW: {"model_id": model_id, "version_major": 2},
                                                        "text/plain": "HBox(children=...)"})


def _tqdm_states() -> dict:
    return {"bar": {"state": {"_model_name": "HBoxModel", "children": ["IPY_MODEL_l", "IPY_MODEL_p", "IPY_MODEL_r"]}},
            "l": {"state": {"_model_name": "HTMLModel", "value": "bands: 100%"}},
            "p": {"state": {"_model_name": "FloatProgressModel", "value": 5.0, "max": 10.0}},
            "r": {"state": {"_model_name": "HTMLModel", "value": " 5/10 [00:01&lt;00:00]"}}}


def test_a_progress_bar_becomes_its_last_line():
    page = site.static_outputs(_notebook([_view("bar")], _tqdm_states()), "01_x")
    (out,) = page.cells[0].outputs
    assert out.data == {"text/plain": "bands: 100% " + "█" * 10 + "·" * 10 + " 5/10 [00:01<00:00]"}
    assert "widgets" not in page.metadata


def test_a_widget_without_saved_state_is_an_error_naming_the_lesson():
    with pytest.raises(site.SiteError, match="07_x.*no saved state"):
        site.static_outputs(_notebook([_view("gone")], {}), "07_x")


def test_a_chemiscope_view_is_drawn_from_its_data_inline():
    widget = plots.structure_view([bulk("Si", "diamond", a=5.43), bulk("Cu", "fcc", a=3.6)], title="two </script>")
    state = {"w": {"state": {**{k: v for k, v in widget.get_state().items() if k in ("value", "mode")},
                             "_anywidget_id": "chemiscope.widget.StructureWidget"}}}
    page = site.static_outputs(_notebook([_view("w"), _view("w")], state), "00_x")
    first, second = (o.data["text/html"] for o in page.cells[0].outputs)
    assert "chemiscope.min.js" in first and "chemiscope.min.js" not in second  # the script once per page
    data = json.loads(first.split('type="application/json" id="view-00-0-data">')[1].split("</script>")[0]
                      .replace("<\\/", "</"))
    assert len(data["structures"]) == 2 and data["structures"][1]["names"] == ["Cu"]
    assert 'mlcourseView("view-00-0", "structure")' in first and "view-00-1" in second


def test_a_chemiscope_view_that_keeps_its_structures_in_the_kernel_is_refused():
    import chemiscope

    widget = chemiscope.show([bulk("Si")], mode="structure", cache_structures=True)
    state = {"w": {"state": {"value": widget.value, "mode": "structure", "_anywidget_id": "chemiscope.widget.X"}}}
    with pytest.raises(site.SiteError, match="structure_view"):
        site.static_outputs(_notebook([_view("w")], state), "00_x")


def test_lesson_facts_and_a_first_cell_without_them():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Lesson 03 — Potentials\n\n**Time:** about 90 minutes.")])
    assert site.lesson_facts(nb) == {"title": "Lesson 03 — Potentials", "minutes": "90"}
    nb.cells[0].source = "# Potentials"
    with pytest.raises(site.SiteError, match="Time"):
        site.lesson_facts(nb)


def test_every_lesson_states_its_title_and_time():
    for path in runner.notebooks():
        facts = site.lesson_facts(nbformat.read(path, as_version=4))
        assert facts["title"].startswith(f"Lesson {path.name[:2]}") and int(facts["minutes"]) > 0


def test_launch_buttons_open_the_lesson_of_this_release_and_show_no_remote_image():
    buttons = site.launch_buttons("05_graph_networks_cgcnn.ipynb", "../student/05_graph_networks_cgcnn.ipynb")
    for url in colab.launch_urls("05_graph_networks_cgcnn.ipynb").values():
        assert f'href="{url}"' in buttons.replace("&amp;", "&")
    assert colab.RELEASE in buttons and "<img" not in buttons and "download" in buttons


def test_links_of_copied_markdown_point_at_the_site_or_at_github():
    text = ("[w](docs/workshop.md) [r](docs/RESULTS.md#full) [n](notebooks/05_graph_networks_cgcnn.ipynb) "
            "[c](CONTRIBUTING.md) [x](https://example.org) [a](#here)")
    out = site.repo_links(text, "README.md")
    assert out == ("[w](workshop.md) [r](full-mode.md#full) [n](lessons/05_graph_networks_cgcnn.ipynb) "
                   f"[c](https://github.com/{colab.REPOSITORY}/blob/{colab.RELEASE}/CONTRIBUTING.md) "
                   "[x](https://example.org) [a](#here)")
    # from an instructor note (instructor/NN.md on the site), one folder down
    assert site.repo_links("[l](../../notebooks/01_classic_regression.ipynb) [m](../RESULTS.md)",
                           "docs/instructor/01_classic_regression.md") == \
        "[l](../lessons/01_classic_regression.ipynb) [m](../full-mode.md)"


def test_the_site_needs_every_lesson_executed_as_the_instructor_notebook(tmp_path):
    fast = tmp_path / "fast"
    fast.mkdir()
    with pytest.raises(site.SiteError, match="(?s)make course.*00_data_and_representations.ipynb: not executed"):
        site.executed_lessons(fast)
    runs = {}
    for p in runner.notebooks():
        (fast / p.name).write_text("{}")
        runs[p.name] = {"ok": True, "variant": "instructor", "error": None}
    runs["03_interatomic_potentials.ipynb"] = {"ok": True, "variant": "student+self-test", "error": None}
    runs["08_crystal_diffusion.ipynb"] = {"ok": False, "variant": "instructor", "error": "CellTimeoutError in cell 12"}
    (tmp_path / "runs.fast.json").write_text(json.dumps(runs))
    with pytest.raises(site.SiteError) as err:
        site.executed_lessons(fast)
    assert "03_interatomic_potentials.ipynb: last executed as the student+self-test copy" in str(err.value)
    assert "08_crystal_diffusion.ipynb: its last run failed (CellTimeoutError in cell 12)" in str(err.value)
    assert "05_" not in str(err.value)


def test_every_lesson_page_keeps_its_badges_to_replace():
    for path in runner.notebooks():
        assert colab.launch_badges(path.name) in nbformat.read(path, as_version=4).cells[0].source


# ------------------------------------------------------------------ the 3D view and the band's images

def test_structure_view_carries_every_structure_and_refuses_bad_input():
    frames = [bulk("Si", "diamond", a=a) for a in (5.3, 5.4, 5.5)]
    widget = plots.structure_view(frames, properties={"a (Å)": [5.3, 5.4, 5.5]}, neighbours=3.0)
    data = json.loads(widget.value)
    assert widget.mode == "structure" and len(data["structures"]) == 3 and "data" not in data["structures"][0]
    assert data["properties"]["a (Å)"]["values"] == [5.3, 5.4, 5.5] and len(data["environments"]) == 6
    both = plots.structure_view(frames, properties={"a": [1, 2, 3], "b": [3, 2, 1], "k": ["x", "y", "x"]},
                                map=("a", "b"), group="k")
    assert both.mode == "default" and json.loads(both.value)["settings"]["map"]["symbol"] == "k"
    with pytest.raises(ValueError, match="empty"):
        plots.structure_view([])
    with pytest.raises(ValueError, match="'a' has 2 values for 3 structures"):
        plots.structure_view(frames, properties={"a": [1, 2]})
    with pytest.raises(ValueError, match="properties: index, a"):
        plots.structure_view(frames, properties={"a": [1, 2, 3]}, map=("a", "volume"))


def test_the_images_of_a_band_move_the_ion_and_end_at_its_endpoints():
    from pymatgen.core import Lattice, Structure

    host = Structure(Lattice.cubic(6.0), ["O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    path = [[0.25 + 0.1 * k, 0.25, 0.25] for k in range(migration.N_IMAGES)]
    band = Structure(host.lattice, ["Li"] * migration.N_IMAGES + ["O", "O"], path + [[0, 0, 0], [0.5, 0.5, 0.5]])
    frames = migration.images(band)
    assert len(frames) == migration.N_IMAGES and all(len(f) == 3 for f in frames)
    assert np.allclose([f[0].frac_coords for f in frames], path)
    assert all(f[0].specie.symbol == "Li" and f[1].specie.symbol == "O" for f in frames)
    initial, final = migration.endpoints(band)
    assert initial == frames[0] and final == frames[-1]


def test_results_page_needs_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCOURSE_BUILD_DIR", str(tmp_path))
    assert results.build_dir() == tmp_path
    with pytest.raises(site.SiteError, match="make course"):
        site._results_page()
