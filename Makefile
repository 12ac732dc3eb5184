# The two commands a new user runs: `make demo` (train the default VAE on
# MNIST and draw its figures) and `make test`. Both create .venv if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install experiment experiment-name clean-venv

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

clean-venv:
	rm -rf $(VENV)
