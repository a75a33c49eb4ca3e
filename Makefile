# sgdscope: `make run` serves the dashboard, `make test` runs the whole suite.
# Both create .venv from requirements.txt when it is missing or out of date.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: setup run test test-fast chromium bench clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

run: setup
	$(VENV)/bin/streamlit run app.py

# Debian's Chromium for the Playwright browser tests (never `playwright install`).
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; \
	fi

test: setup chromium
	$(PY) -m pytest -q -p no:cacheprovider

# The suite without TensorFlow workers or a browser: seconds, not minutes.
test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not tf and not browser"

bench: setup
	$(PY) bench/crossover.py

clean-venv:
	rm -rf $(VENV)
