# Two commands set everything up on a fresh machine:
#   make run   - runs the daemon on its embedded defaults
#   make test  - runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test venv browser clean
# apt-get needs root; a developer who is not root is asked through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

run: venv
	$(BIN)/mailticketd serve

# Debian's headless Chromium and its driver, for the page tests in a real browser (tests/browser.py).
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "installing Debian's chromium and chromium-driver"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver >/dev/null; \
	fi

test: venv browser
	$(BIN)/pytest

clean:
	rm -rf $(VENV) var .pytest_cache
