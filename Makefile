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

# make demo [INPUT="photo.jpg more/*.png"]: upscale your images, or the bundled sample, with the default x4 model
INPUT ?=
demo: $(VENV)/.runtime
	$(VENV)/bin/repsr upscale $(if $(INPUT),$(INPUT),$$($(PY) -c "from repsr.zoo import sample_image; print(sample_image())")) -o runs/demo

test: $(VENV)/.test
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m pytest

bench: $(VENV)/.runtime
	$(PY) benchmarks/deploy_speedup.py

clean:
	rm -rf $(VENV) runs
