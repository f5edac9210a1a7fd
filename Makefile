# pycache-d developer entry points. `make run` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
# NOTE: read when the Makefile is parsed, before `make venv` made $(PY): ask $(PYTHON), which the
# venv is made from (same suffix), until the venv exists.
EXT_SUFFIX := $(shell $(if $(wildcard $(PY)),$(PY),$(PYTHON)) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))' 2>/dev/null)
NATIVE_SRC := $(wildcard csrc/*.c csrc/*.h pycache_d/*/*.pyx pycache_d/*/*.pxd) setup.py
APT_PACKAGES := memcached libmemcached-tools libmemcached-dev libsasl2-modules php-cli php-memcached curl wrk \
  nutcracker libfaketime chromium chromium-driver prometheus debootstrap \
  php-memcache libcache-memcached-perl libcache-memcached-fast-perl libcache-memcached-libmemcached-perl \
  ruby ruby-dalli libspymemcached-java openjdk-17-jdk-headless

.PHONY: venv ext test lint test-asan test-tsan fuzz bench loadtest dist deb debs test-packages install clean run apt pylibmc

venv: $(STAMP) ext

$(STAMP): pyproject.toml setup.py $(wildcard client/pyproject.toml)
	@echo "make: creating $(VENV) and installing the dependencies (a few minutes the first time)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet "Cython>=3.0.10,<4"
	$(PY) -m pip install --quiet --no-build-isolation -e '.[test,bench,dist]'
	if [ -f client/pyproject.toml ]; then $(PY) -m pip install --quiet -e './client[test]'; fi
	touch $@

# Rebuild the extension in place whenever a C, Cython or build file changed.
EXTENSIONS = $(foreach m,store/_native protocol/_csession net/_cconnection net/_cstream,pycache_d/$(m)$(EXT_SUFFIX))
ext: $(STAMP)
	@if [ -z "$$PYCACHE_D_NO_EXTENSIONS" ]; then $(MAKE) -s --no-print-directory $(EXTENSIONS); fi

$(EXTENSIONS) &: $(NATIVE_SRC) | $(STAMP)
	@echo "make: compiling the native extension (30-60 s)"
	$(PY) setup.py --quiet build_clib build_ext --inplace

# Debian packages some tests and benchmarks use (memcached as an oracle, memcaslap, wrk, twemproxy
# for the cluster test, libfaketime to step the daemon's wall clock, libmemcached-dev to build
# pylibmc, libsasl2-modules for the clients' SASL PLAIN, PHP's Memcached extension as a client,
# Chromium for the dashboard's browser test, prometheus for promtool, debootstrap for the Debian
# roots of make test-packages; PHP's older Memcache, Perl's three clients, Ruby and its Dalli
# (which does not pull in ruby itself), Java's spymemcached and a JDK to compile its script, for
# tests/test_client_sweep.py). Installed when we are root; otherwise those tests skip and say why.
apt:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "apt-get install $$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
	      || echo "warning: could not install $$missing; the tests that need them will skip"; \
	  fi; \
	else echo "not root: skipping apt-get install of $(APT_PACKAGES) (tests that need them will skip)"; fi

# pylibmc for the client tests (binary protocol, SASL), built from source against Debian's
# libmemcached-dev: the PyPI wheel bundles a libsasl2 that looks for its plugins in
# /usr/lib64/sasl2, so its SASL fails on Debian. Its tests skip when it could not be built.
PYLIBMC_STAMP := $(VENV)/.pylibmc
pylibmc: $(PYLIBMC_STAMP)
$(PYLIBMC_STAMP): | $(STAMP)
	@if dpkg -s libmemcached-dev >/dev/null 2>&1; then \
	  ($(PY) -m pip install --quiet --force-reinstall --no-deps --no-binary pylibmc "pylibmc>=1.6" && touch $@) \
	    || echo "warning: pylibmc did not build; its tests will skip"; \
	else echo "libmemcached-dev not installed: pylibmc's tests will skip"; fi

lint: venv
	$(BIN)/ruff check pycache_d tests benchmarks fuzz
	$(BIN)/ruff format --check pycache_d tests benchmarks fuzz
	$(BIN)/mypy
	cd client && ../$(BIN)/ruff check . && ../$(BIN)/ruff format --check . && ../$(BIN)/mypy

# The daemon's suite, the client distribution's suite (its own pytest config), then the
# store and compiled session under AddressSanitizer.
test: venv apt pylibmc lint
	$(BIN)/pytest -q tests --ignore=tests/packages
	cd client && ../$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-tsan

# The store's tests against an ASan+UBSan build of the extension, built out of tree so the
# normal in-place build stays as it is.
ASAN_BUILD := build/asan
test-asan: $(STAMP)
	PYCACHE_D_SANITIZE=1 $(PY) setup.py --quiet build --build-base $(ASAN_BUILD) --build-lib $(ASAN_BUILD)/lib
	cd $(ASAN_BUILD) && PYTHONPATH=$(CURDIR)/$(ASAN_BUILD)/lib PYTHONMALLOC=malloc \
	  LD_PRELOAD=$$(gcc -print-file-name=libasan.so):$$(gcc -print-file-name=libubsan.so) \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  PYCACHE_D_EXPECT_NATIVE_FROM=$(CURDIR)/$(ASAN_BUILD)/lib \
	  $(CURDIR)/$(PY) -m pytest -q -p no:cacheprovider -m asan $(CURDIR)/tests -o addopts=""

# The store shared by threads through its lock (csrc/store_lock.h), checked by
# tests/c/store_threads.c built with ThreadSanitizer: any data race fails it. (The threaded
# socket driver of issue 14 joins these tests when it lands.)
test-tsan: $(STAMP)
	TSAN=1 $(BIN)/pytest -q -p no:cacheprovider tests/test_store_threads.py

# Coverage-guided fuzzing with atheris (fuzz/harness.py says what is checked): the pure-Python
# session, then the compiled session + C store differentially against it, FUZZ_SECONDS each, from
# the seed corpus fuzz/corpus; new inputs and crashes go to $(FUZZ_BUILD). The
# native target runs a clang build of the extension made out of tree like test-asan's, with
# libFuzzer's coverage counters on top of PYCACHE_D_SANITIZE=1, under an ASan runtime that
# carries libFuzzer (fuzz/asan_with_fuzzer.sh says why). Not part of `make test`; the regression
# test replays the corpus there.
FUZZ_BUILD := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_APT := clang libclang-rt-14-dev
FUZZ_FLAGS = -dict=fuzz/protocol.dict -max_len=8192 -timeout=60 -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1
FUZZ_SEEDS = fuzz/corpus
fuzz: $(STAMP)
	@command -v clang >/dev/null || $(MAKE) --no-print-directory apt APT_PACKAGES="$(FUZZ_APT)"
	@command -v clang >/dev/null || { echo "make fuzz needs clang with compiler-rt (Debian: $(FUZZ_APT))"; exit 1; }
	$(PY) -m pip install --quiet "atheris>=2.3,<4"
	CC=clang LDSHARED="clang -shared" CFLAGS=-fsanitize=fuzzer-no-link PYCACHE_D_SANITIZE=1 \
	  $(PY) setup.py --quiet build --build-base $(FUZZ_BUILD) --build-lib $(FUZZ_BUILD)/lib
	fuzz/asan_with_fuzzer.sh $(FUZZ_BUILD)/asan_with_fuzzer.so
	mkdir -p $(FUZZ_BUILD)/corpus/session $(FUZZ_BUILD)/corpus/native $(FUZZ_BUILD)/artifacts
	rc=0; \
	PYCACHE_D_NO_EXTENSIONS=1 $(PY) fuzz/fuzz_session.py $(FUZZ_FLAGS) \
	  -artifact_prefix=$(FUZZ_BUILD)/artifacts/session- $(FUZZ_BUILD)/corpus/session $(FUZZ_SEEDS) || rc=1; \
	PYTHONPATH=$(CURDIR)/$(FUZZ_BUILD)/lib PYTHONMALLOC=malloc LD_PRELOAD=$(CURDIR)/$(FUZZ_BUILD)/asan_with_fuzzer.so \
	  ASAN_OPTIONS=detect_leaks=0:quarantine_size_mb=32 UBSAN_OPTIONS=print_stacktrace=1 \
	  PYCACHE_D_EXPECT_NATIVE_FROM=$(CURDIR)/$(FUZZ_BUILD)/lib \
	  $(PY) fuzz/fuzz_native.py $(FUZZ_FLAGS) \
	  -artifact_prefix=$(FUZZ_BUILD)/artifacts/native- $(FUZZ_BUILD)/corpus/native $(FUZZ_SEEDS) || rc=1; \
	exit $$rc

bench: venv apt
	$(PY) benchmarks/run.py
	$(PY) client/benchmarks/http_bench.py

# A daemon per backend driven by 4 processes x 8 connections for LOADTEST_SECONDS each, every
# reply checked against a model of what the keys hold (benchmarks/loadtest.py says how); fails
# on any wrong reply or error.
LOADTEST_SECONDS ?= 30
loadtest: venv
	$(PY) benchmarks/loadtest.py --seconds $(LOADTEST_SECONDS)

# sdists of both distributions, the client's pure wheel and one daemon wheel per supported CPython
# (3.11, 3.12, 3.13: whichever packaging/pythons.sh finds; it names the missing ones) in $(DIST),
# each built from the sdist and repaired by auditwheel to a manylinux tag (packaging/build_dist.sh).
DIST ?= dist
dist: venv
	PY=$(PY) BIN=$(abspath $(BIN)) packaging/build_dist.sh $(DIST)

# $(DIST)/pycache-d_<version>_amd64.deb for this machine's /usr/bin/python3: a venv at /opt/pycache-d,
# the units, the conffile, man pages, completion (packaging/deb/build.sh says how and why).
deb: dist
	packaging/deb/build.sh $(DIST)

# One .deb per Debian release (DEB_RELEASES), each built inside a debootstrapped root of that
# release, so it runs with that release's python3 (packaging/deb/in_release.sh; root only).
DEB_RELEASES ?= bookworm trixie
debs: dist
	for release in $(DEB_RELEASES); do packaging/deb/in_release.sh $$release build $(DIST) || exit 1; done

# The heavy release checks, not part of `make test`: wheels for every supported CPython, each
# installed in a fresh venv of its own interpreter and smoke-tested there; the sdist without a
# compiler; the .deb of each Debian release built, installed, used, restarted and purged under
# that release's systemd (tests/packages/). Needs root and the network (PyPI, Debian's mirror).
test-packages: venv
	@start=$$(date +%s); $(BIN)/pytest -q -s -p no:cacheprovider tests/packages; rc=$$?; \
	  echo "make test-packages: $$(( $$(date +%s) - start )) s"; exit $$rc

# By hand, as root: the daemon and the HTTP API into a venv at $(PREFIX) made from $(INSTALL_PYTHON),
# commands linked into $(BINDIR) (the units' ExecStart= follows it), the units into $(UNITDIR)
# and the default config to /etc/pycache-d (an existing config is kept). DESTDIR prefixes the
# units, config and links only: a venv cannot be moved once made, so it is made at $(PREFIX).
PREFIX ?= /opt/pycache-d
INSTALL_PYTHON ?= /usr/bin/python3
BINDIR ?= /usr/bin
UNITDIR ?= /etc/systemd/system
install: dist
	$(INSTALL_PYTHON) -m venv $(PREFIX)
	tag=$$($(INSTALL_PYTHON) -c 'import sys; print("cp%d%d" % sys.version_info[:2])'); \
	$(PREFIX)/bin/python -m pip install --quiet --disable-pip-version-check \
	  $(DIST)/pycache_d-*-$$tag-$$tag-manylinux*.whl "$$(echo $(DIST)/pycache_client-*.whl)[http]"
	install -d $(DESTDIR)$(UNITDIR)
	for unit in packaging/systemd/*.service packaging/systemd/*.socket; do \
	  sed 's#^\(Exec[A-Za-z]*\)=/usr/bin/#\1=$(BINDIR)/#' $$unit > $(DESTDIR)$(UNITDIR)/$$(basename $$unit); done
	[ -e $(DESTDIR)/etc/pycache-d/pycache-d.toml ] || \
	  install -D -m 644 packaging/pycache-d.toml $(DESTDIR)/etc/pycache-d/pycache-d.toml
	install -d $(DESTDIR)$(BINDIR)
	for cmd in pycache-d pycache-cli pycache-http; do ln -sfn $(PREFIX)/bin/$$cmd $(DESTDIR)$(BINDIR)/$$cmd; done
	@echo "installed; now: systemctl daemon-reload && systemctl enable --now pycache-d.service"

clean:
	rm -rf build dist *.egg-info pycache_d/*/*.so pycache_d/*/_*.c pycache_d/*/*.html .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

# The daemon on 127.0.0.1:$(PORT) and the HTTP API on 127.0.0.1:$(HTTP_PORT); Ctrl-C stops both.
# The HTTP API starts only once the daemon accepts: a daemon that cannot start (port taken) ends
# the run with its own error line.
PORT ?= 11211
HTTP_PORT ?= 5000
run: venv
	@packaging/run.sh $(PY) $(BIN) $(PORT) $(HTTP_PORT)
