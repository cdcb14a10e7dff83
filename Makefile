# greenwheel task runner. `make help` lists the targets.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# The build backend, the runtime dependencies and the `test` extra, read from
# pyproject.toml (the one list; the test extra includes the applications that
# tests/integration runs). The bench extras are installed by `make bench`.
REQUIREMENTS = $(PYTHON) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); print("\n".join(p["build-system"]["requires"] + p["project"]["dependencies"] + p["project"]["optional-dependencies"]["test"]))'
BENCH_DEPS = gevent pytest-benchmark matplotlib eventlet uvloop

.DEFAULT_GOAL := help
.PHONY: help deps build demo test test-rust test-py compat bench bench-rust bench-py lint fmt clean

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

deps: ## Install the Python packages the build and tests need
	$(REQUIREMENTS) | $(PIP) install -q --disable-pip-version-check -r /dev/stdin

build: deps ## Build the Rust extension (release) and install greenwheel editable
	$(PIP) install -q --disable-pip-version-check --no-build-isolation --no-deps -e .

demo: build ## Build, then run the live demo (servers and clients on loopback)
	$(PYTHON) examples/demo.py

test: build test-rust test-py ## Build, then run every test (Rust and Python)

test-rust: ## cargo test on the pure-Rust core (wheel, poller, clock)
	cargo test --quiet

test-py: ## pytest on the Python package (needs `make build`)
	@# Exit code 5 means pytest collected no tests: a broken suite, so it fails.
	$(PYTHON) -m pytest -q || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc; }

compat: build ## gevent's own test suite + stdlib tests under patch_all(), vs gevent; fails below the ratchet
	$(PYTHON) tests/compat/harness.py --check

bench: build bench-rust bench-py ## Every benchmark: criterion, then greenwheel vs gevent/asyncio side by side

bench-rust: ## criterion benches of the timer wheel
	cargo bench --bench wheel -- --warm-up-time 1 --measurement-time 2

bench-py: ## Side-by-side comparison; prints ratios to gevent and writes benches/results.png
	$(PIP) install -q --disable-pip-version-check $(BENCH_DEPS) || true
	$(PYTHON) benches/compare.py

lint: ## rustfmt, clippy, ruff and mypy.stubtest
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --features python -- -D warnings
	$(PYTHON) -m ruff check python tests benches
	$(PYTHON) -m ruff format --check python tests benches
	$(PYTHON) -m mypy.stubtest greenwheel._core

fmt: ## Format Rust and Python sources
	cargo fmt
	$(PYTHON) -m ruff format python tests benches

clean: ## Remove build products
	cargo clean
	rm -f python/greenwheel/_core*.so
