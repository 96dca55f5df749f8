# `make test` is the one test command (README, .ci/run). On a fresh Debian 12 host, as root, it installs what
# the tests need and runs the whole suite; a second run installs nothing.
PYTHON ?= python3
VENV := .venv
APT_PACKAGES := postgresql-common postgresql-15 patroni vip-manager etcd-server etcd-client iproute2 util-linux systemd-container debootstrap
PYTEST_ARGS ?=
# Three workers: each release's machines on one (one lab per release, booted once), every other tier on the third,
# which then runs the longest machine test file on a lab of its own per release (OWN_LAB in tests/conftest.py).
# Groups: tests/conftest.py. PYTEST_ARGS come last: e.g. PYTEST_ARGS="-n 0 -m unit" for one tier in one process.
XDIST := -n 3

.PHONY: test lint deps apt venv image clean demo demo-down

test: deps lint image
	$(VENV)/bin/pytest $(XDIST) $(PYTEST_ARGS)

# Python by ruff (pyproject.toml), the formula by salt-lint; both before any test runs.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/salt-lint $$(find salt -name '*.sls')

deps: apt venv

# The lab machines' images (tests/machines.py), one per release of $$PATRONI_DEBIAN_RELEASES (default: all): built
# once per recipe, with progress, before the suite.
image: apt venv
	$(VENV)/bin/python tests/machines.py image

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "apt-get install:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-test.txt setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-test.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check -e .
	touch $@

# A newcomer's first command: what the host lacks, said first; then the same installs as make test; then the demo
# (machines of this host's Debian release, or RELEASE=trixie; the image is built on the way when missing).
demo:
	@$(PYTHON) tests/demo.py check
	@$(MAKE) --no-print-directory deps
	@$(VENV)/bin/python tests/demo.py up $(if $(RELEASE),--release $(RELEASE))

demo-down:
	@$(PYTHON) tests/demo.py down

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
