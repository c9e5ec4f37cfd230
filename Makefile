# Two commands set everything up on a fresh machine:
#   make run   - runs the daemon on its embedded defaults
#   make test  - runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

run: venv
	$(BIN)/mailticketd serve

test: venv
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var .pytest_cache
