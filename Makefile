# Two entry points for a fresh machine: `make run` and `make test`.
# Both create .venv, install what they need, prepare the default voice when it
# is missing (a no-op once prepared), then serve or test.
#
# Another Python in its own environment, the default .venv left alone:
#   make test PYTHON=/path/to/python3.10 VENV=.venv-3.10
# (Python 3.10 to 3.13; the modelscope extra installs on 3.11 only, by its markers.)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check --quiet

.PHONY: run test lint models bench install install-test test-tools pbx-tools clean

# pip 23.1 or newer builds packages that ship only setup.py (jieba) into wheels and compiles
# them; the older pip of Python 3.10's venv installs them uncompiled.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install 'pip>=23.1'

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install -e '.[test,modelscope,english]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

models: $(VENV)/.installed
	$(BIN)/huiyin models prepare

run: models
	$(BIN)/huiyin serve

# Debian tools the tests use to check our output independently: ffmpeg's ffprobe reads
# encoded audio, Chromium runs the browser page (Playwright drives it, downloads none),
# nginx runs the edge config, docker-compose validates the compose file without an engine,
# PostgreSQL's server runs the store's suite a second time on a shared index, Prometheus's
# promtool checks and unit-tests the alert rules.
TEST_TOOLS := /usr/bin/ffprobe:ffmpeg /usr/bin/chromium:chromium /usr/sbin/nginx:nginx \
              /usr/bin/docker-compose:docker-compose \
              /usr/lib/postgresql/15/bin/postgres:postgresql /usr/bin/promtool:prometheus

test-tools:
	@missing=""; for pair in $(TEST_TOOLS); do \
	  [ -x "$${pair%%:*}" ] || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "make: install these Debian packages to run every test:$$missing"; exit 1; fi; fi

# Lint and types first: they take seconds and fail for reasons a reader can fix at once.
lint: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy

# Libraries the pbx group needs to build Asterisk and FreeSWITCH from the archives named by
# PBX_ASTERISK_SRC and PBX_FREESWITCH_SRC (tests/pbx); nothing when neither is set.
PBX_TOOLS := build-essential autoconf automake libtool libtool-bin pkg-config libjansson-dev \
             libxml2-dev libsqlite3-dev libedit-dev uuid-dev libcurl4-openssl-dev libssl-dev \
             libncurses-dev libtiff-dev libjpeg-dev libpcre2-dev libspeex-dev libspeexdsp-dev \
             libldns-dev zlib1g-dev libsndfile1-dev

pbx-tools:
	@if [ -n "$$PBX_ASTERISK_SRC$$PBX_FREESWITCH_SRC" ]; then \
	  missing=""; for pkg in $(PBX_TOOLS); do \
	    dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "make: installing$$missing"; apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    else echo "make: install these Debian packages to build the PBXs:$$missing"; exit 1; fi; fi; fi

test: install-test models test-tools pbx-tools lint
	$(BIN)/python -m pytest

bench: install-test models
	$(BIN)/python bench/synth_rtf.py
	$(BIN)/python bench/intelligibility.py

clean:
	rm -rf $(VENV) build *.egg-info
