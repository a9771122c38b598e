# The two commands of the README:
#   make all    set up (if needed), run every notebook with papermill, render reports/index.html
#               (make all DATA=/path/to/dataset: the same on a real dataset)
#   make test   set up (if needed), run pytest on the library and nbval on every notebook (ci preset)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PRESET ?= quick
# DATA=/path/to/dataset runs the main job on a real dataset instead of the built-in generator.
DATA ?=
# GPU machines get onnxruntime-gpu + TensorRT instead of the CPU onnxruntime (they cannot coexist).
EXTRAS ?= $(if $(shell command -v nvidia-smi 2>/dev/null),gpu,cpu),test
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: all test env refresh-notebooks lr-sweep

# Long jobs wait passively in OpenMP (unetq.machine.LONG_JOB_ENV): on a busy 2-core machine
# spinning threads make every training step several times slower.
LONG_JOB := OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE}

all: env
	$(LONG_JOB) $(PY) -m unetq.cli.pipeline --preset $(PRESET) $(if $(DATA),--data "$(DATA)")

test: env
	$(LONG_JOB) UNETQ_REPORTS_DIR=build/test-reports UNETQ_PUBLISHED_DIR=build/test-reports UNETQ_DATA_DIR=build/test-data \
	  $(PY) -m pytest -q tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# On a CPU machine this takes the local CPU wheel; never the multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	# A kernel named python3 inside the venv, so papermill and nbval run this interpreter.
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (unetq)"
	touch $@

# The learning-rate sweep every architecture gets (training seed 0, the preset's procedure); its
# rows in reports/results/training.csv choose each architecture's learning rate for `make all`.
lr-sweep: env
	$(LONG_JOB) $(PY) -m unetq.cli.lr_sweep --preset $(PRESET) $(if $(DATA),--data "$(DATA)")

# Re-execute the committed notebooks with their default (ci) parameters, refreshing the stored
# outputs that nbval compares.
refresh-notebooks: env
	$(LONG_JOB) UNETQ_REPORTS_DIR=build/test-reports UNETQ_PUBLISHED_DIR=build/test-reports UNETQ_DATA_DIR=build/test-data \
	  $(PY) -m unetq.cli.pipeline --refresh-notebooks

# Performance goals of the study, each printed as ratios measured side by side in one run.
.PHONY: bench
bench: env
	$(PY) -m unetq.cli.deploy_benchmark
	$(PY) -m unetq.cli.bitpack_benchmark

# Seed 003's characterisation: every architecture x engine x precision over batch sizes 1-32 and
# image sizes 128/256/512 (benchmark_grid.csv) and AMP training over batch sizes (amp.csv). Times
# the preset's trained models (run `make all PRESET=...` first), on a quiet machine; about an hour
# on a 2-core CPU at cpu-study.
.PHONY: characterise
characterise: env
	$(PY) -m unetq.cli.characterise --preset $(PRESET) $(if $(DATA),--data "$(DATA)")

# Every representation of every training seed (accuracy_by_format_seeds.csv): does the report's
# recommendation hold for each seed? No timing; needs the preset's checkpoints.
.PHONY: deploy-seeds
deploy-seeds: env
	$(LONG_JOB) $(PY) -m unetq.cli.deploy_seeds --preset $(PRESET) $(if $(DATA),--data "$(DATA)")

# Every CUDA path in one prepared run (AMP training, eager/compiled FP32/FP16/BF16 inference, the
# Triton MBU-Net kernel) for a GPU lent for a few minutes; writes reports/results/gpu_check_<gpu>.csv.
.PHONY: gpu-check
gpu-check: env
	$(PY) -m unetq.cli.gpu_check

# Seed 001's Figure 7 from scratch: k = 0..12 cheapest layers masked (cost order), each trained
# from scratch (seed 0 at every rate of MBU_LRS, the preset's other seeds at the chosen rate:
# 65 training runs at three seeds; cached checkpoints are reused), then the packed engine timed
# for every recorded k (mbu_ablation.csv, mbu_ablation_frontier.csv). Time on a quiet machine.
MBU_LRS ?= 3e-3,1e-2,3e-2
.PHONY: mbu-pareto
mbu-pareto: env
	$(LONG_JOB) $(PY) -m unetq.cli.mbu_ablation --experiment pareto --preset $(PRESET) --lrs $(MBU_LRS) $(if $(DATA),--data "$(DATA)")
	$(PY) -m unetq.cli.mbu_ablation --experiment pareto --preset $(PRESET) --frontier $(if $(DATA),--data "$(DATA)")
