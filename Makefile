# Two commands on a fresh machine: `make plan` (offline plan of prod) and `make test`.
# Each sets itself up: `make plan` a virtualenv with the runtime requirements only (requirements.txt: the
# program and the policy pack), `make test` adds the development ones (requirements-dev.txt) and the system
# packages the tests need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# One stamp per requirements file, inside the virtualenv: a .venv that is a symlink to a shared virtualenv
# (or one built by an older Makefile) is brought up to date file by file.
RUNTIME_STAMP := $(VENV)/.installed-requirements.txt
DEV_STAMP := $(VENV)/.installed-requirements-dev.txt
STACK ?= prod
# Checkov lives in its own virtualenv: its pinned dependencies conflict with the project's.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.requirements-installed

.PHONY: plan test venv venv-runtime docs docs-reference system-packages bench bench-canary bench-bake scan clean fuzz

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt | $(PY)
	$(PIP) -r requirements.txt
	touch $@

$(DEV_STAMP): requirements-dev.txt $(RUNTIME_STAMP)
	$(PIP) -r requirements-dev.txt
	touch $@

venv-runtime: $(RUNTIME_STAMP)
venv: $(DEV_STAMP)

# System packages the tests need (installed only when missing; root or sudo on Debian/Ubuntu).
system-packages:
	@bash .ci/system-packages.sh

plan: $(RUNTIME_STAMP)
	$(PY) -m infra plan --stack $(STACK)

# Two pytest-xdist workers (the machine has 2 cores); whole files go to one worker, so a module's server
# (PostgreSQL, the Monitoring emulator, the policy pack) starts once. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: $(DEV_STAMP) system-packages
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

$(CHECKOV_STAMP): scan/requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r scan/requirements-checkov.txt
	touch $(CHECKOV_STAMP)

# Checkov over both stacks' plans (Terraform plan JSON); every failure must be waived in scan/checkov-waivers.yaml.
scan: $(DEV_STAMP) $(CHECKOV_STAMP)
	$(PY) -m infra scan --checkov $(CHECKOV_VENV)/bin/checkov

bench: $(DEV_STAMP)
	$(PY) -m benchmarks.plan --stack prod --runs 5

# The canary judges on every scenario into benchmarks/results/canary.json (committed), then the report page
# docs/explanation/benchmark.md and its plots are rendered from it. BENCH_RUNS=N overrides each scenario's runs.
bench-canary: $(DEV_STAMP)
	$(PY) -m benchmarks.canary --scenarios benchmarks/scenarios/canary.json --json $(if $(BENCH_RUNS),--runs $(BENCH_RUNS)) \
		> benchmarks/results/canary.json.tmp && mv benchmarks/results/canary.json.tmp benchmarks/results/canary.json
	$(PY) -m docsgen

# The bake watch on simulated 48 h windows (about 5 minutes; the README's bake table).
bench-bake: $(DEV_STAMP)
	$(PY) -m benchmarks.bake_watch --windows 200

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache

# Long property-based fuzz of stack files and --set values (tests/test_fuzz_input.py); FUZZ_EXAMPLES to size it.
FUZZ_EXAMPLES ?= 2000
# ... and the budget guard through a real functions-framework server (tests/test_budget_guard_fuzz.py)
BUDGET_FUZZ_EXAMPLES ?= 2000
fuzz: $(DEV_STAMP)
	FUZZ_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz_input.py \
		-k any_input --hypothesis-show-statistics
	FUZZ_PROFILE=fuzz BUDGET_FUZZ_EXAMPLES=$(BUDGET_FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider \
		tests/test_budget_guard_fuzz.py --hypothesis-show-statistics

# The generated pages (docs/reference/*, the benchmark report, bootstrap/deploy-roles.json); commit the result.
docs-reference: $(DEV_STAMP)
	$(PY) -m docsgen

# The docs site (MkDocs, Material theme) into build/site; --strict: a broken link or nav entry fails.
docs: $(DEV_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet
