# Two commands set everything up on a fresh machine:
#   make run   - runs the daemon on its embedded defaults
#   make test  - runs the whole test suite (on SQLite, then its storage and end-to-end part on PostgreSQL)
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

# The Debian programs the tests drive (postfix, swaks, chromium, systemd-analyze, postgresql); quiet when present.
system:
	@$(SUDO) bash tests/setup-system.sh

# The storage, pipeline and end-to-end tests run a second time on PostgreSQL (a private cluster the session
# starts; tests marked sqlite_only are skipped there). tests/test_shared_database.py runs on PostgreSQL in both.
PG_TESTS := $(addprefix tests/,test_storage.py test_pipeline.py test_roundtrip.py test_threading.py \
	test_helpdesk.py test_helpdesk_security.py test_web.py test_delivery.py test_operator_mail.py \
	test_requests_by_mail.py test_roles.py test_vms.py test_directory_rules.py test_contacts.py test_steps.py \
	test_passwords.py test_tokens.py test_spoofing.py test_sender_check.py test_request_hints.py \
	test_outbound_headers.py test_real_world_pipeline.py test_loop_guard.py test_smtp_utf8.py \
	test_smtp_limits.py test_outbound_delivery.py test_big_mail.py test_daemons_ops.py test_inbox_groups.py)

test: venv system
	$(BIN)/pytest
	$(BIN)/pytest --backend=postgresql $(PG_TESTS)

clean:
	rm -rf $(VENV) var .pytest_cache
