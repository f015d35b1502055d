# corosnap developer commands. Every target builds what it needs on its own.
#   make test        venv + lint (ruff) + types (mypy) + the whole pytest suite, twice: on the
#                    C engine, then on the pure-Python one (COROSNAP_PUREPYTHON=1)
#   make pytest      the suite on the C engine only (the matrix runs this on 3.12+);
#                    make pytest-pure: on the pure-Python engine only
#   make demo        a durable workflow killed part-way and resumed by a new process (the
#                    main demo), then a generator snapshotted in one process, finished in another
#   make bench       the size/speed benchmark (benchmarks/)
#   make bench-matrix  the benchmark on every .venv-3.X made so far, one table per version
#   make bench-scheduler  checkpoint overhead per await and workflow throughput on SQLite
#   make bench-migration  bytes and time migratable snapshots add, migration onto edited code
#   make bench-instructions  instructions per dumps/loads call, counted by valgrind (steady
#                    where timings move by a few percent: compare two copies call for call)
#   make demo-deploy a workflow suspended at a step, a bug fixed after it, the deploy, the run
#                    finishing on the fixed code (docs/evolution.md)
#   make fuzz        the long fuzzing campaign: 100,000 inputs on 3.11; FUZZ_VERSION=3.12
#                    FUZZ_INPUTS=20000 picks the version and count (tools/fuzz-campaign.sh)
#   make test-matrix the suite on every supported CPython (3.11-3.15), found or built
#                    (3.11: make test; the others: make pytest); MATRIX_ARGS="3.14" picks
#   make dist        the sdist (from a git archive export) and one wheel per supported
#                    CPython found here, each installed in a fresh venv and smoke-tested
#                    (tools/dist.py); DIST_ARGS="--versions 3.12" picks
#
# PYTHON=/path/to/python3.X selects the interpreter (and the .venv-3.X); the static
# checks (ruff, mypy) do not depend on it, so STATIC_CHECKS= skips them, as the
# matrix does for every version but 3.11.

PYTHON ?= $(shell command -v python3.11 || echo $(HOME)/.pyenv/versions/3.11.7/bin/python3.11)
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV ?= .venv-$(PYVER)
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest pytest-pure demo demo-deploy bench bench-matrix \
	bench-scheduler bench-migration bench-instructions fuzz test-matrix dist clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard src/corosnap/*/*.c src/corosnap/*/*.h src/corosnap/*.h)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel
	$(VPY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples tools

# The package (mypy's own settings), then a small program written against the
# public API as a user would, under --strict.
typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict --follow-imports=silent tests/public_api_program.py

pytest: $(STAMP)
	$(VPY) -m pytest -q $(PYTEST_ARGS)

# The same suite on the pure-Python engine: every layer's Python reference
# code (frames still read and write through the C frame module).
pytest-pure: $(STAMP)
	COROSNAP_PUREPYTHON=1 $(VPY) -m pytest -q $(PYTEST_ARGS)

STATIC_CHECKS ?= lint typecheck

test: $(STATIC_CHECKS) pytest pytest-pure

demo: $(STAMP)
	$(VPY) examples/workflow_demo.py
	@echo
	@echo "== the snapshot underneath: a generator suspended in one process, finished in another =="
	$(VPY) examples/demo.py

bench: $(STAMP)
	$(VPY) benchmarks/run.py $(BENCH_ARGS)

# The benchmark on every .venv-3.X made so far (make test-matrix makes them all).
bench-matrix: $(STAMP)
	$(VPY) benchmarks/matrix.py $(sort $(wildcard .venv-3.*/bin/python)) $(BENCH_ARGS)

bench-scheduler: $(STAMP)
	$(VPY) benchmarks/bench_scheduler.py $(BENCH_ARGS)

bench-migration: $(STAMP)
	$(VPY) benchmarks/bench_migration.py $(BENCH_ARGS)

bench-instructions: $(STAMP)
	$(VPY) benchmarks/instructions.py $(BENCH_ARGS)

demo-deploy: $(STAMP)
	$(VPY) examples/deploy_demo.py

# The fuzzing campaign (tools/corosnap_fuzz, not part of the wheel), nice'd, on one
# version; report and failing inputs in build/fuzz/<version>/.  FUZZ_SEED, FUZZ_JOBS,
# FUZZ_ENGINES (default "c,python": every input through both engines, which must
# agree; "c" or "python" for one) and FUZZ_ARGS pass through.
FUZZ_VERSION ?= $(PYVER)
FUZZ_ENGINES ?= c,python
FUZZ_INPUTS ?= 100000
fuzz:
	FUZZ_SEED=$(FUZZ_SEED) FUZZ_JOBS=$(FUZZ_JOBS) FUZZ_ENGINES=$(FUZZ_ENGINES) \
		bash tools/fuzz-campaign.sh $(FUZZ_VERSION) $(FUZZ_INPUTS) $(FUZZ_ARGS)

test-matrix:
	bash tools/test-matrix.sh $(MATRIX_ARGS)

dist: $(STAMP)
	nice $(VPY) tools/dist.py $(DIST_ARGS)

clean:
	rm -rf .venv-* build dist src/*.egg-info src/corosnap/*/*.so
