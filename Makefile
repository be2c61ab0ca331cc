# Two entry points for a fresh machine: `make run` and `make test`.
# Both create .venv, install what they need, prepare the default voice when it
# is missing (a no-op once prepared), then serve or test.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check --quiet

.PHONY: run test models bench install install-test test-tools clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install -e '.[test,modelscope]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

models: $(VENV)/.installed
	$(BIN)/huiyin models prepare

run: models
	$(BIN)/huiyin serve

# ffmpeg's ffprobe checks encoded audio independently of our own decoders; Debian's
# Chromium runs the browser page in tests/test_page.py (Playwright drives it, downloads none).
test-tools:
	@command -v ffprobe >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
	  else echo "make: install ffmpeg (ffprobe) to run the codec cross-checks"; fi; }
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "make: install chromium (/usr/bin/chromium) to run the browser page test"; fi; }

test: install-test models test-tools
	$(BIN)/python -m pytest

bench: install-test models
	$(BIN)/python bench/synth_rtf.py
	$(BIN)/python bench/intelligibility.py

clean:
	rm -rf $(VENV) build *.egg-info
