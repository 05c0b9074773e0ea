# The two commands of the README:  make demo   and   make test
# Everything else here is what those two need. The Python environment lives in .venv; uv's
# download cache, the Kafka jars and the FerretDB build are cached under ~/.cache.
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
PROMTOOL := /usr/bin/promtool
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup stack demo test unit test-faults soak stack-down mutations
setup: $(STAMP) $(PROMTOOL)

# promtool checks and unit-tests deploy/prometheus/ (tests/unit/deploy/test_alert_rules.py).
# From Debian's prometheus package, installed only while /usr/bin/promtool is missing; the
# package's own server is not wanted here, so it is stopped and disabled where systemd runs.
$(PROMTOOL):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
	-@$(SUDO) systemctl disable --now prometheus >/dev/null 2>&1

$(STAMP): pyproject.toml
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q uv
	@[ -x $(PY) ] || python3 -m uv venv -q --python python3 .venv
	python3 -m uv pip install -q --python $(PY) -e '.[test]'
	@rm -f .venv/.installed-*; touch $(STAMP)

stack: setup
	deploy/local/stack.sh up --with-registry

stack-down:
	deploy/local/stack.sh down

demo: setup
	deploy/local/stack.sh up
	.venv/bin/syncflow demo $(DEMO_ARGS)

test: stack
	$(PY) -m pytest $(PYTEST_ARGS); status=$$?; \
	$(PY) tests/mutations/run.py $(MUTATION_ARGS) || status=1; \
	exit $$status

# Mutation check (tests/mutations): each protection of tests/mutations/mutations.py broken in
# turn in a copy of the repository must turn its tests red; `make test` runs it after pytest.
mutations: stack
	$(PY) tests/mutations/run.py $(MUTATION_ARGS)

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The fault-injection run of the whole pipeline alone (kills, broker/database restarts, target
# faults, poison records); `make test` runs it last.
test-faults: stack
	$(PY) -m pytest tests/faults -s $(PYTEST_ARGS)

# The same fault run as a soak: 50,000+ raw records, every fault of the schedule twice, poison
# records, a strict reconciliation; its figures go to bench/SOAK.md. Not part of `make test`.
soak: stack
	$(PY) -m pytest tests/faults -s --soak $(PYTEST_ARGS)

# Every benchmark job three times (sync-in at 100,000 records and at 20,000 with 1/2/4
# workers, sync-out with 1/2/4 workers, end to end at ~20,000 source records; about 45
# minutes on 2 cores) and one Markdown report, bench/REPORT.md: medians and spreads, each
# figure beside its baseline from the same run, the goals marked met or not.
# BENCH_ARGS=--quick for a smoke run (one run each, small sizes, a few minutes).
.PHONY: bench
bench: setup
	deploy/local/stack.sh up
	$(PY) bench/report.py $(BENCH_ARGS)
