"""The course website (make site), opened in headless Chromium.

The browser tests need the built site (``make course && make site``) and Debian's Chromium
(/usr/bin/chromium; no browser is downloaded). Without them they skip, saying so; ``make site-check``
(CI) sets MLCOURSE_REQUIRE_SITE=1, and then a missing site or browser fails. Every request that leaves
localhost is refused and counted as an error: the pages must read offline.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import numpy as np
import pytest

from mlcourse import colab, results, runner, site

pytestmark = pytest.mark.site
LESSONS = [p.name for p in runner.notebooks()]
REQUIRED = os.environ.get("MLCOURSE_REQUIRE_SITE") == "1"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def _need(condition: bool, why: str) -> None:
    if not condition:
        (pytest.fail if REQUIRED else pytest.skip)(why)


@pytest.fixture(scope="module")
def site_dir() -> Path:
    out = results.build_dir() / "site"
    _need((out / "index.html").exists(), f"no built site in {out}: run `make course && make site`")
    return out


@pytest.fixture(scope="module")
def executed_dir() -> Path:
    return results.build_dir() / "fast"


@pytest.fixture(scope="module")
def base_url(site_dir):
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    _need(Path(chromium).exists(), "Debian's Chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def visit(browser, url: str):
    """Open ``url``; return the page and the list of problems seen: console errors, uncaught exceptions,
    failed requests and any request that leaves localhost (refused)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"uncaught exception: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))

    def route(r):
        host = urlsplit(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            return r.continue_()
        problems.append(f"request leaves localhost (the page needs the network): {r.request.url}")
        return r.abort()

    page.route("**/*", route)
    response = page.goto(url, wait_until="load")
    if response is None or not response.ok:
        problems.append(f"{url} answered {response and response.status}")
    return page, problems


def output_images(nb_path: Path) -> int:
    """Image outputs of an executed notebook."""
    nb = nbformat.read(nb_path, as_version=4)
    return sum(any(k.startswith("image/") for k in o.get("data", {}))
               for c in nb.cells for o in c.get("outputs", []))


def views_3d(nb_path: Path) -> int:
    """Chemiscope views of an executed notebook (the widget models saved in its metadata)."""
    nb = nbformat.read(nb_path, as_version=4)
    states = nb.metadata.get("widgets", {}).get(site.WIDGET_STATE, {}).get("state", {})
    shown = {o["data"][site.WIDGET_VIEW]["model_id"] for c in nb.cells for o in c.get("outputs", [])
             if site.WIDGET_VIEW in o.get("data", {})}
    return sum(str(states[m]["state"].get("_anywidget_id", "")).startswith(site.CHEMISCOPE) for m in shown)


def not_blank(png: bytes) -> bool:
    """A drawn picture: many grey levels and real contrast (a blank or one-colour canvas has neither)."""
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), float)
    return grey.std() > 5 and len(np.unique(grey)) > 16


# ------------------------------------------------------------------ every page

def test_landing_page(browser, base_url, site_dir):
    page, problems = visit(browser, base_url + "index.html")
    rows = page.locator("table tbody tr")
    assert rows.count() == len(LESSONS)
    for i, name in enumerate(LESSONS):
        row = rows.nth(i)
        assert row.locator("a").first.get_attribute("href") == f"lessons/{name.removesuffix('.ipynb')}.html"
        for kind, url in colab.launch_urls(name).items():
            assert row.locator(f"a.mlcourse-launch-{kind.lower()}").get_attribute("href") == url
        assert re.search(r"\d+ min", row.inner_text())
    (results.build_dir() / "site-check").mkdir(exist_ok=True)
    page.screenshot(path=str(results.build_dir() / "site-check" / "landing.png"), full_page=True)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_page(browser, base_url, site_dir, executed_dir, name):
    stem = name.removesuffix(".ipynb")
    page, problems = visit(browser, f"{base_url}lessons/{stem}.html")
    page.wait_for_function("[...document.querySelectorAll('.mlcourse-3d')].every(v => v.dataset.drawn)",
                           timeout=60_000)
    main = page.locator("main")
    text = main.inner_text()
    assert "Traceback (most recent call last)" not in text and page.locator(".output.error, .traceback").count() == 0
    # every figure of the executed lesson is on its page
    assert main.locator(".cell_output img").count() == output_images(executed_dir / name)
    for img in main.locator(".cell_output img").all():
        assert img.evaluate("i => i.complete && i.naturalWidth > 0"), img.get_attribute("src")
    # launch buttons open this lesson; the student copy is there
    for kind, url in colab.launch_urls(name).items():
        assert main.locator(f"a.mlcourse-launch-{kind.lower()}").get_attribute("href") == url
    student = main.locator("a.mlcourse-student").get_attribute("href")
    copy = nbformat.read((site_dir / "lessons" / student).resolve(), as_version=4)
    tags = [t for c in copy.cells for t in c.metadata.get("tags", [])]
    assert "exercise" in tags and "solution" not in tags
    # the 3D views draw: as many as the lesson showed, each a canvas with a picture on it
    views = main.locator(".mlcourse-3d")
    assert views.count() == views_3d(executed_dir / name)
    for view in views.all():
        assert view.get_attribute("data-drawn") == "yes", view.inner_text()
        view.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        canvas = view.locator("canvas").first
        assert not_blank(canvas.screenshot()), f"a 3D view of {name} is blank"
    if views.count() or name == LESSONS[0]:  # what a reader sees of the page: its first 3D view, if any
        if views.count():
            views.first.scroll_into_view_if_needed()
        page.screenshot(path=str(results.build_dir() / "site-check" / f"{stem}.png"))
    assert not problems, "\n".join(problems)


def test_search(browser, base_url, site_dir):
    page, problems = visit(browser, base_url + "search.html?q=perovskite")
    page.wait_for_selector("#search-results li", timeout=30_000)
    hits = page.locator("#search-results li a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert any("lessons/05_graph_networks_cgcnn" in h for h in hits), hits
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", ["results", "full-mode", "setup", "workshop", "instructor/index"])
def test_course_pages(browser, base_url, site_dir, page):
    p, problems = visit(browser, f"{base_url}{page}.html")
    assert len(p.locator("main").inner_text()) > 200
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ links, without a browser

class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("href", "src"):
            if a.get(key):
                self.links.append(a[key])


def test_internal_links_resolve(site_dir):
    pages = {p: _Links() for p in site_dir.rglob("*.html") if "_static" not in p.parts}  # _static: templates
    for path, parser in pages.items():
        parser.feed(path.read_text())
    broken = []
    for path, parser in pages.items():
        for link in parser.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith(("//", "mailto:", "javascript:")):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{path.relative_to(site_dir)}: {link}")
            elif parts.fragment and target.suffix == ".html" and parts.fragment not in pages[target].ids:
                broken.append(f"{path.relative_to(site_dir)}: {link} (no such anchor)")
    assert broken == []


# ------------------------------------------------------------------ the same 3D view in JupyterLab

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server on localhost (no token) over a folder holding one notebook that shows a 3D view."""
    import subprocess
    import sys
    import time
    import urllib.request

    root = tmp_path_factory.mktemp("lab")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("from ase.build import bulk\nfrom mlcourse import plots\n"
                                          "plots.structure_view([bulk('Si', 'diamond', a=5.43, cubic=True)], neighbours=3.0)")]
    nbformat.write(nb, root / "view.ipynb")
    port = _free_port()
    env = {**os.environ, **{k: str(root / k.lower()) for k in
                            ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR",
                             "JUPYTERLAB_SETTINGS_DIR")}}
    server = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                               f"--ServerApp.port={port}", "--ServerApp.token=", "--ServerApp.password=",
                               "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}", "--allow-root",
                               "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "api/status", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("JupyterLab did not start within 60 s")
    yield url
    server.terminate()
    server.wait(timeout=30)


def test_the_3d_view_draws_offline_in_jupyterlab(browser, jupyterlab):
    """JupyterLab, with no network: run a cell that makes a structure_view; the widget (anywidget's
    extension, chemiscope's bundled JavaScript) draws a crystal. Only localhost is reachable."""
    page, problems = visit(browser, jupyterlab + "lab/tree/view.ipynb")
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=90_000)
    page.get_by_text("| Idle").wait_for(timeout=90_000)  # the kernel has started
    page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
    page.keyboard.press("Shift+Enter")
    canvas = page.locator(".jp-OutputArea canvas").first
    shot = results.build_dir() / "site-check" / "jupyterlab-3d.png"
    shot.parent.mkdir(exist_ok=True)
    try:
        canvas.wait_for(timeout=120_000)
        page.wait_for_timeout(2000)
    finally:
        page.screenshot(path=str(shot))
    assert not_blank(canvas.screenshot()), "the 3D view in JupyterLab is blank"
    # chemiscope's Jupyter widget (not the site's viewer) posts one anonymous usage event to plausible.io
    # (README, "3D views"); refused here, as offline, and the view draws all the same. Nothing else leaves.
    external = [p for p in problems if "leaves localhost" in p and "https://plausible.io/api/event" not in p]
    assert not external, "\n".join(external)
