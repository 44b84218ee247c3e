# Quick start targets; each sets up .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench clean

$(VENV)/.runtime: pyproject.toml scripts/setup_env.sh
	REPSR_VENV=$(VENV) scripts/setup_env.sh
	touch $@

$(VENV)/.test: pyproject.toml scripts/setup_env.sh
	REPSR_VENV=$(VENV) scripts/setup_env.sh test
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(VENV)/bin/repsr demo --out runs/demo

test: $(VENV)/.test
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m pytest

bench: $(VENV)/.runtime
	$(PY) benchmarks/deploy_speedup.py

clean:
	rm -rf $(VENV) runs
