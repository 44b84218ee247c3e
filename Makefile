# Quick start targets; each sets up .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench bench-gpu gpu-run clean

$(VENV)/.runtime: pyproject.toml scripts/setup_env.sh
	REPSR_VENV=$(VENV) scripts/setup_env.sh
	touch $@

$(VENV)/.test: pyproject.toml scripts/setup_env.sh
	REPSR_VENV=$(VENV) scripts/setup_env.sh test
	touch $@ $(VENV)/.runtime

# make demo [INPUT="photo.jpg clip.mp4 more/*.png"]: upscale your images and videos, or the bundled sample, with the
# default x4 model into runs/demo-upscale (repsr demo writes runs/demo-method, repsr train demo runs/demo).
# Your own files may be videos, so INPUT brings in the video extra (PyAV) once.
INPUT ?=
demo: $(VENV)/.runtime
	$(if $(INPUT),$(PY) -c "import av" 2>/dev/null || $(PY) -m pip --disable-pip-version-check -q install -e ".[video]")
	$(VENV)/bin/repsr upscale $(if $(INPUT),$(INPUT),$$($(PY) -c "from repsr.zoo import sample_image; print(sample_image())")) -o runs/demo-upscale

test: $(VENV)/.test
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m pytest

# every benchmark; each writes its section of benchmarks/RESULTS.md and a JSON file in benchmarks/results/
bench: $(VENV)/.test
	for b in deploy_speedup train_step tiling_speed train_throughput resize_metrics upscale_memory cpu_runtimes video_speed degradation_speed; do \
		$(PY) benchmarks/$$b.py || exit 1; done

# The GPU machine has no network and no venv: these two run its own python3 on the source tree.
GPU_PY ?= python3

# on a CUDA machine: deploy networks in fp32/TF32/fp16/bf16, batch 1 and 8, eager and CUDA graph, against the floor
bench-gpu:
	PYTHONPATH=src $(GPU_PY) benchmarks/gpu_inference.py

# the one-shot GPU session (scripts/gpu_run.py): device tests, bench-gpu, RepSR vs plain at batch 32 / patch 64,
# inside a 530 s deadline, into $$OUT. Prepare its data here first: $(PY) scripts/gpu_run.py --prepare-data
gpu-run:
	PYTHONPATH=src $(GPU_PY) scripts/gpu_run.py

clean:
	rm -rf $(VENV) runs
