# Face Video Deblurring via 3D Facial Priors — set-up, demo and tests.
# `make demo` and `make test` create the virtual environment on first use.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(VENV)/bin/pip
STAMP   = $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONUNBUFFERED = 1

.PHONY: venv demo test bench clean-venv

venv: $(STAMP)

# The pinned stack first, then this project itself, editable (pyproject.toml): its packages are
# importable from every script and working directory, and edits take effect without reinstalling.
# setuptools warns on every editable install of a flat layout that same-named folders in the
# working directory take precedence: here they are these very packages, so that warning is filtered.
$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt -r requirements-test.txt
	PYTHONWARNINGS="ignore:Editable installation" $(PIP) install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) demo/run_demo.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/bench_deblur.py

clean-venv:
	rm -rf $(VENV)
