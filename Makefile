# mlcourse: the two commands of the README.
#   make course   install everything, then execute every lesson in fast mode and print the results
#   make test     install everything, then run the test suite (unit tests + each notebook once, fast mode)
# Both are idempotent: the install step re-runs only when requirements/lock.txt or pyproject.toml change.
#   make quick    for contributors: the unit tests without the notebook, data and slow ones (pytest markers,
#                 pyproject.toml), under a minute of CPU
#   make site     the course website from the lessons make course executed (build/fast/ -> build/site/)
#   make site-check   opens that site in headless Chromium (Debian's chromium package) and checks every page
#   make colab-twin [NB="00 03 05"]   Colab's Python 3.13 and package versions, here: runs the notebooks'
#                                     set-up cell against this checkout, then the notebooks in fast mode
#   make colab-twin-base              only the twin's base (Colab's packages; kept outside the clone)

PYTHON ?= python3.11
VENV ?= .venv
# Extra pip options, e.g. on a Linux laptop without a local torch wheel:
#   make course PIP_OPTS="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_OPTS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements/lock.txt pyproject.toml | sha256sum | cut -c1-16)

# The Colab twin (see scripts/colab_twin.py). Its base (Colab's packages, ~6 GB with torch's GPU libraries)
# is built once per version of requirements/colab-twin.txt and kept outside the clone.
PYTHON_COLAB ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) python3.13)
TWIN ?= $(HOME)/.cache/mlcourse/colab-twin
TWIN_STAMP := $(TWIN)/.base-$(shell cat requirements/colab-twin.txt requirements/colab-constraints.txt | sha256sum | cut -c1-16)
NB ?=

.PHONY: install course test quick nbval full student site site-check clean colab-twin colab-twin-base
install: $(STAMP)

$(STAMP): requirements/lock.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: the pinned torch 2.13.0 wheel needs Python 3.11 (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The lock is the complete, already-resolved environment: install it as is, every file checked against its sha256 (see README, "Pins").
	$(BIN)/python -m pip install --no-deps --require-hashes --disable-pip-version-check $(PIP_OPTS) -r requirements/lock.txt
	$(BIN)/python -m pip install --no-deps --disable-pip-version-check -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mlcourse)"
	rm -f $(VENV)/.installed-*
	touch $@

course: install
	$(BIN)/mlcourse run --fast
	$(BIN)/mlcourse results --mode fast

test: install
	$(BIN)/python -m pytest

quick: install
	$(BIN)/python -m pytest -p no:cacheprovider -q -m "not notebook and not data and not slow and not site"

# For instructors editing a notebook: nbval executes it cell by cell and reports the failing cell.
# (CI executes each notebook once, through the runner, where time and memory are measured.)
nbval: install
	# one notebook at a time: JPY_SESSION_NAME tells the kernel which lesson it runs, as Jupyter Server does
	for nb in notebooks/[0-9][0-9]_*.ipynb; do JPY_SESSION_NAME=$$nb $(BIN)/python -m pytest -p no:cacheprovider --nbval-lax $$nb || exit 1; done

full: install
	$(BIN)/mlcourse run --full
	$(BIN)/mlcourse results --mode full

student: install
	$(BIN)/mlcourse student --out student

site: install
	$(BIN)/mlcourse site

# screenshots of the landing page and of the lessons' 3D views go to build/site-check/
site-check: install
	MLCOURSE_REQUIRE_SITE=1 $(BIN)/python -m pytest -p no:cacheprovider -q -m site tests/test_site.py

clean:
	rm -rf build student

$(TWIN_STAMP):  # its name holds the hash of both files: no mtime check, so a fresh clone reuses the base
	@command -v $(PYTHON_COLAB) >/dev/null || { echo "$(PYTHON_COLAB) not found: the Colab twin needs Python 3.13 (set PYTHON_COLAB=...)"; exit 1; }
	rm -rf $(TWIN)
	$(PYTHON_COLAB) -m venv $(TWIN)
	# Colab's preinstalled versions; torch is the package index's build of Colab's 2.11.0 (see requirements/colab-twin.txt)
	$(TWIN)/bin/python -m pip install -q --disable-pip-version-check -r requirements/colab-twin.txt -c requirements/colab-constraints.txt
	# The twin's test tooling, which Colab does not need: papermill executes the notebooks for the runner
	$(TWIN)/bin/python -m pip install -q --disable-pip-version-check papermill -c requirements/colab-constraints.txt
	$(TWIN)/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (Colab twin)"
	touch $@

# the base alone (CI installs it in the background while the tests run)
colab-twin-base: $(TWIN_STAMP)

colab-twin: $(TWIN_STAMP)
	$(TWIN)/bin/python scripts/colab_twin.py $(NB)
