# Two commands set everything up on a fresh machine:
#   make run   - runs the daemon on its embedded defaults
#   make test  - runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test venv system clean
# apt-get needs root; a developer who is not root is asked through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

run: venv
	$(BIN)/mailticketd serve

# The Debian programs the tests drive (postfix, swaks, chromium, systemd-analyze); quiet when present.
system:
	@$(SUDO) bash tests/setup-system.sh

test: venv system
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var .pytest_cache
