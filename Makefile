# CodeGraph Ops. `make lab` brings up and deploys the local lab fleet; `make test` runs
# every check. Both install what they need first (idempotently): Debian packages,
# the virtualenv, the test-host image and the release artifact.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Mitogen for Ansible runs every playbook of the lab, the tests and the benchmarks: one
# Python interpreter per host instead of a module payload per task (about half the time
# of a converge, docs/benchmarks.md). MITOGEN=0 runs them with Ansible's linear strategy.
MITOGEN ?= 1
ifeq ($(MITOGEN),1)
export ANSIBLE_STRATEGY := mitogen_linear
export ANSIBLE_STRATEGY_PLUGINS := $(CURDIR)/scripts/mitogen
endif
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# --- setup ----------------------------------------------------------------------
.PHONY: bootstrap venv image release
bootstrap: ## install the Debian packages and podman settings the controller needs
	@scripts/bootstrap-host.sh

# (after bootstrap: a package of the tests, hnswlib, builds from source with its g++)
$(VENV)/.installed: requirements.txt app/pyproject.toml | bootstrap
	@test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	@echo "venv: installing requirements.txt"
	@$(VENV)/bin/pip install --quiet -r requirements.txt 2>&1 | grep -v '^WARNING: Location' || true
	@$(VENV)/bin/ansible-playbook --version >/dev/null
	@touch $@

# This checkout is the collection codegraph.ops: linked where ansible.cfg's collections_path
# finds it (the roles call its filters by full name), before whatever copy
# ~/.ansible/collections may hold.
COLLECTION_LINK := .cache/collections/ansible_collections/codegraph/ops
$(COLLECTION_LINK):
	@mkdir -p $(dir $@) && ln -sfn $(CURDIR) $@

venv: $(VENV)/.installed $(COLLECTION_LINK) ## the virtualenv with the pinned controller tools; the collection linked

image: bootstrap ## build the Debian 12 and 13 systemd test-host images (once per recipe)
	@molecule/image/build.sh 12 >/dev/null
	@molecule/image/build.sh 13 >/dev/null

release: venv ## build the release artifact (wheelhouse tarball + .sha256)
	@scripts/build-release.sh

# --- checks -----------------------------------------------------------------------
.PHONY: lint docs test test-repo test-app test-molecule mutation
lint: venv bootstrap ## yamllint, ansible-lint (production profile), ruff, shellcheck
	yamllint --strict .
	ansible-lint  # plain, as on a fresh clone: .ansible-lint holds the profile
	ruff check app tests molecule scripts bench roles plugins
	ruff format --check app tests molecule scripts bench roles plugins
	shellcheck scripts/*.sh molecule/image/build.sh

docs: venv ## regenerate the role READMEs' variable tables and the dashboards
	python scripts/role_docs.py
	python scripts/dashboards.py

test-repo: venv ## repository checks: role specs, READMEs, versions
	cd tests && pytest -q

test-app: venv bootstrap ## the service's tests (API, real processes over TLS, schemathesis)
	cd app && pytest -q

# Each scenario's output is kept in logs/; on a failure its failing tests and tasks are
# printed again last, where a CI log's tail shows them: the first ones (often the cause)
# and the last, lines cut to 300 characters.
test-molecule: venv image release ## every molecule scenario on real systemd hosts
	@mkdir -p logs
	@for scenario in $(SCENARIOS); do \
	  echo "=== molecule test -s $$scenario"; started=$$SECONDS; \
	  molecule test -s $$scenario 2>&1 | tee logs/molecule-$$scenario.log || { \
	    echo "=== molecule test -s $$scenario failed; its failures (whole log: logs/molecule-$$scenario.log):"; \
	    sed -E 's/\x1b\[[0-9;]*m//g; s/^ *│ ?//' logs/molecule-$$scenario.log \
	      | grep -aE '^(FAILED|ERROR) |^E  |^(fatal|failed): |^\[ERROR\]|_{5,} test_' | grep -v RETRYING \
	      | cut -c1-300 > logs/failures-$$scenario.txt || true; \
	    lines=$$(wc -l < logs/failures-$$scenario.txt); \
	    if [ "$$lines" -le 70 ]; then cat logs/failures-$$scenario.txt; else \
	      head -50 logs/failures-$$scenario.txt; echo "[... $$((lines - 70)) lines ...]"; \
	      tail -20 logs/failures-$$scenario.txt; fi; \
	    exit 1; }; \
	  echo "=== molecule test -s $$scenario passed in $$((SECONDS - started)) s"; \
	done

test: lint test-repo test-app test-molecule ## everything CI runs

mutation: venv ## mutation testing of the canary judge (mutmut; minutes, not in CI): docs/testing.md
	@scripts/mutation.sh

# --- benchmarks -------------------------------------------------------------------
BENCHES ?= api_get ingest vector profiles backup deploy restart replication
.PHONY: bench
bench: venv bootstrap ## run the benchmarks (BENCHES=...) and write docs/benchmarks.md
	@for name in $(BENCHES); do echo "=== bench $$name"; (cd bench && python bench_$$name.py) || exit 1; done
	cd bench && python report.py

# --- the lab ----------------------------------------------------------------------
.PHONY: lab lab-down
lab: venv image release ## bring up the lab fleet (podman) and deploy it with playbooks/site.yml
	ansible-playbook -i inventories/lab playbooks/lab.yml
	ansible-playbook -i inventories/lab playbooks/site.yml
	ansible-playbook -i inventories/lab playbooks/health_check.yml

lab-down: venv ## remove the lab fleet's containers and network
	ansible-playbook -i inventories/lab playbooks/lab.yml -e lab_state=absent
