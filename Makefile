# The two commands a new user runs: `make demo` (train the default VAE on
# MNIST and draw its figures) and `make test`. Both create .venv if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow test-colab install experiment experiment-name clean-venv wheel notebooks test-oldest docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/tfvae data fetch mnist
	$(BIN)/tfvae train --preset mnist-bernoulli-20d

# One experiment of experiments/README.md, e.g. `make experiment NAME=bernoulli_vae`.
experiment: experiment-name $(VENV)/.installed
	$(BIN)/tfvae data fetch mnist
	$(BIN)/tfvae data fetch fashion_mnist
	$(BIN)/python -m experiments.$(NAME)

experiment-name:
	@test -n "$(NAME)" || (echo "usage: make experiment NAME=<one of: $$(cd experiments && ls [a-z]*_*.py | grep -v common | sed 's/.py//' | tr '\n' ' ')>" && exit 2)

test: $(VENV)/.installed
	$(BIN)/python -m pytest

# What `make test` leaves out (-m slow): every notebook, every family's CLI pipeline, real-data runs, the wheel
# installed in a fresh virtualenv. CI runs it after `make test`.
test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -m slow

# The documentation site (mkdocs.yml, docs/) into site/: open site/index.html. `.venv/bin/mkdocs serve` shows it
# while you write. tests/test_docs.py builds it the same way, --strict.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	@echo "open site/index.html"

# A wheel in dist/; upload it beside a notebook in Colab and the install cell installs it instead of the repository.
wheel: $(VENV)/.installed
	rm -rf build dist/tfvae-*.whl
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	@ls dist/tfvae-*.whl

# Run every notebook top to bottom at its default sizes on Colab's stack (.venv-colab, which `make test-colab`
# builds) and commit the result (outputs, figures, thumbnails in docs/images/, README's table); one notebook:
# `make notebooks NOTEBOOK=quickstart`. About 8 minutes here.
notebooks:
	@test -x $(COLAB)/bin/tfvae || { echo "make notebooks runs on Colab's stack in $(COLAB): run make test-colab first"; exit 2; }
	$(COLAB)/bin/tfvae data fetch mnist
	$(COLAB)/bin/tfvae data fetch fashion_mnist
	$(COLAB)/bin/python tools/notebooks.py execute $(NOTEBOOK)

# The oldest versions setup.cfg allows (tools/oldest.py pins each lower bound), in .venv-oldest, and the whole
# test suite on them (2.5 GB installed; the suite about 9 minutes here). Not part of `make test`.
# See README, "Versions".
OLDEST := .venv-oldest
test-oldest:
	test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/pip install --quiet --upgrade pip
	$(PYTHON) tools/oldest.py > $(OLDEST)/constraints.txt
	$(OLDEST)/bin/pip install --quiet -c $(OLDEST)/constraints.txt -e '.[test]'
	$(OLDEST)/bin/pip list 2>/dev/null \
		| grep -iE '^(tensorflow(-probability|-datasets|-metadata)?|tf.keras|dm-sonnet|numpy|pandas|plotnine|matplotlib|protobuf) '
	$(OLDEST)/bin/python -m pytest

# Colab's default runtime, rebuilt from tools/colab_runtime.txt (Python 3.13 and Colab's own versions) in
# .venv-colab: the notebooks' install cell is run there against a wheel of this checkout and must change none of
# Colab's packages (tools/colab_install.py); then tfvae's test extras are added, Colab's versions held, and the
# whole suite runs there, the notebooks included. A Python 3.13 is found on PATH or under pyenv, or given:
# `make test-colab PYTHON=/path/to/python3.13`. About 15 minutes here, most of it pip. See README, "Install".
COLAB := .venv-colab
COLAB_PYTHON = $(shell for p in $(PYTHON) python3.13 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13); do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null && { echo "$$p"; break; }; done)
test-colab:
	@test -n "$(COLAB_PYTHON)" || { echo "make test-colab needs a Python 3.13: make test-colab PYTHON=/path/to/python3.13"; exit 2; }
	rm -rf $(COLAB) build dist/tfvae-*.whl
	$(COLAB_PYTHON) -m venv $(COLAB)
	$(COLAB)/bin/python -m pip install --quiet -r tools/colab_runtime.txt
	$(COLAB)/bin/python -m pip wheel --quiet --no-deps --wheel-dir dist .
	$(COLAB)/bin/python tools/colab_install.py dist/tfvae-*.whl
	$(COLAB)/bin/python -m pip install --quiet --constraint tools/colab_runtime.txt -e '.[test]'
	$(COLAB)/bin/python -m pip list 2>/dev/null \
		| grep -iE '^(tensorflow(-probability|-datasets|-metadata)?|tf.keras|keras|dm-sonnet|numpy|pandas|plotnine|protobuf) '
	$(COLAB)/bin/python -m pytest
	$(COLAB)/bin/python -m pytest -m slow tests/test_notebooks.py

clean-venv:
	rm -rf $(VENV) $(OLDEST) $(COLAB)
