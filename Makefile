# greenwheel task runner. `make help` lists the targets.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# Requirements come from pyproject.toml, the one list: the build backend and
# the runtime dependencies for `make build`/`make demo`, plus the `test` extra
# (which includes the applications tests/integration runs) for `make test`.
REQUIREMENTS = $(PYTHON) -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb")); print("\n".join(p["build-system"]["requires"] + p["project"]["dependencies"] + [r for x in sys.argv[1:] for r in p["project"]["optional-dependencies"][x]]))'
BENCH_DEPS = gevent pytest-benchmark matplotlib eventlet uvloop rloop granian flask

.DEFAULT_GOAL := help
SHELL := /bin/bash
.PHONY: help build-deps deps build demo test test-rust test-py test-matrix wheel test-wheels compat asyncio-conformance bench bench-rust bench-py lint fmt clean

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

build-deps: ## Install what building and running greenwheel needs (maturin, greenlet, zope.*)
	$(REQUIREMENTS) | $(PIP) install -q --disable-pip-version-check -r /dev/stdin

deps: ## Install everything the tests need too (the `test` extra)
	$(REQUIREMENTS) test | $(PIP) install -q --disable-pip-version-check -r /dev/stdin

build: build-deps ## Build the Rust extension (release) and install greenwheel editable
	@echo "Building the Rust extension (release; about a minute the first time)..."
	$(PIP) install -v --disable-pip-version-check --no-build-isolation --no-deps -e . 2>&1 \
		| { grep -E --line-buffered '^ *(Compiling|Finished|Built wheel|Successfully installed)|error|warning: unused' || true; }; \
		exit $${PIPESTATUS[0]}

demo: build ## Build, then run the live demo (servers and clients on loopback)
	$(PYTHON) examples/demo.py

test: deps build test-rust test-py ## Build, then run every test (Rust and Python)

test-rust: ## cargo test on the pure-Rust core (wheel, poller, clock)
	cargo test --quiet

test-py: ## pytest on the Python package (needs `make build`)
	@# Exit code 5 means pytest collected no tests: a broken suite, so it fails.
	$(PYTHON) -m pytest -q || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc; }

test-matrix: ## Build and run the Python tests on every other supported CPython (3.11-3.13)
	$(PYTHON) tools/matrix.py test --others

wheel: ## manylinux2014 wheels (stripped) for CPython 3.11-3.13 and the sdist, into dist/
	$(PYTHON) tools/matrix.py wheels

test-wheels: ## Install each wheel in a fresh venv and run the suite against it
	$(PYTHON) tools/matrix.py test-wheels

compat: deps build ## gevent's own test suite + stdlib tests under patch_all(), vs gevent; fails below the ratchet
	$(PYTHON) tests/compat/harness.py --check

asyncio-conformance: ## CPython's own asyncio tests on greenwheel.asyncio's loop vs the default loop: both pass counts
	$(PYTHON) tools/asyncio_conformance.py

bench: build bench-rust bench-py ## Every benchmark: criterion, then greenwheel vs gevent/asyncio side by side

bench-rust: ## criterion benches of the timer wheel
	cargo bench --bench wheel -- --warm-up-time 1 --measurement-time 2

bench-py: ## Side-by-side comparison; prints ratios to gevent and writes benches/results.png
	$(PIP) install -q --disable-pip-version-check $(BENCH_DEPS) || true
	$(PYTHON) benches/compare.py

lint: ## rustfmt, clippy, ruff, mypy and mypy.stubtest
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --features python -- -D warnings
	$(PYTHON) -m ruff check python tests benches tools
	$(PYTHON) -m ruff format --check python tests benches tools
	$(PYTHON) -m mypy python/greenwheel
	$(PYTHON) -m mypy.stubtest greenwheel._core

fmt: ## Format Rust and Python sources
	cargo fmt
	$(PYTHON) -m ruff format python tests benches tools

clean: ## Remove build products
	cargo clean
	rm -f python/greenwheel/_core*.so
