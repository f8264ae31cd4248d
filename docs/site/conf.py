# Sphinx configuration of the course website (make site). mlcourse/site.py assembles the pages into
# build/site-src/ and runs Sphinx there; this file is copied beside them. Nothing here executes a notebook.
import os

project = "mlcourse"
author = "the mlcourse authors"
copyright = "the mlcourse authors; code MIT, each dataset under its own licence (data/registry.tsv)"
release = os.environ["MLCOURSE_RELEASE"]
extensions = ["myst_nb"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
nb_execution_mode = "off"  # the lessons were executed by `make course`; the site renders their outputs
nb_merge_streams = True
exclude_patterns = ["_build", "_extra"]
html_theme = "sphinx_book_theme"
html_title = "Machine learning for materials science"
html_theme_options = {
    "repository_url": f"https://github.com/{os.environ['MLCOURSE_REPOSITORY']}",
    "repository_branch": os.environ["MLCOURSE_RELEASE"],
    "use_repository_button": True,
    "use_download_button": True,
    "home_page_in_toc": True,
    "show_toc_level": 2,
}
html_static_path = ["_static"]
html_css_files = ["mlcourse.css"]
html_extra_path = ["_extra"]  # the student copies, served as they are
html_last_updated_fmt = ""
# Formulas with MathJax 2 from the jupyter-server-mathjax wheel (site.py copies it into _static/mathjax): no CDN.
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
html_context = {"default_mode": "light"}  # the theme's light/dark switch starts light (unset, it logs an error)
# that MathJax carries the STIX-Web fonts only (not TeX's): tell it so, or it asks for files that are not there
mathjax2_config = {"HTML-CSS": {"availableFonts": ["STIX-Web"], "preferredFont": "STIX-Web", "webFont": "STIX-Web",
                                "imageFont": None}}
