# Two commands, each self-bootstrapping and idempotent from a fresh clone:
#   make pipeline   install, then run the notebook chain on the CPU default into runs/cpu/
#   make test       install, then pytest (which executes the notebook chain too)
# An active virtualenv or conda env is used as is; otherwise .venv/ is created.
# torch is installed *before* the package, and only if missing, so an existing torch
# (e.g. your CUDA build) is never replaced.

SHELL := /bin/bash
PRESET ?= cpu
RUN_DIR ?= runs/$(PRESET)
ARGS ?=

ifneq ($(or $(VIRTUAL_ENV),$(CONDA_PREFIX)),)
  PY := python
  STAMP := .tvad-installed-env
else
  PY := .venv/bin/python
  STAMP := .venv/.tvad-installed
endif

.PHONY: install pipeline study test figures tiny-backbone benchmarks clean-runs

$(PY):
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip

# torch + torchvision from PyPI on x86_64 Linux are CUDA builds with their nvidia-* wheels: about
# 6.6 GB in the venv. Check the free space first, so that a full disk is a one-line error naming the
# need instead of pip's OSError halfway through an install.
NEED_GB ?= 8
$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch, torchvision" 2>/dev/null || { \
	  free=$$(df -Pk "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" | awk 'NR==2 {print int($$4/1048576)}'); \
	  if [ "$$free" -lt $(NEED_GB) ]; then echo "error: installing torch + torchvision needs about $(NEED_GB) GB free; only $$free GB free on the disk of the venv ($(PY)). Free some space (old venvs, run directories) or set NEED_GB." >&2; exit 1; fi; \
	  $(PY) -m pip install -q --no-cache-dir "torch>=2.4" "torchvision>=0.19"; }
	$(PY) -m pip install -q --no-cache-dir -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

pipeline: $(STAMP)
	$(PY) -m tvad.cli pipeline --preset $(PRESET) --run-dir $(RUN_DIR) $(ARGS)
	@mkdir -p figures && if [ -d $(RUN_DIR)/figures ]; then cp -r $(RUN_DIR)/figures/. figures/; fi

# A seed study: notebooks 01-03 (data, stage 1, stage 2) once per training seed (stage1.seed, stage2.seed,
# eval.seeds; the data stays the same) into $(STUDY_DIR)/seed-S/, then mean ± sample std of every result key:
# $(STUDY_DIR)/study.json and $(STUDY_DIR)/tables/study.md (tvad/study.py). Rerunning skips finished seeds.
# The cpu preset: about 10 minutes a seed on 2 cores. ARGS="--write-docs docs/results.md" fills its section;
# ARGS="--to 04" adds notebook 04's tables (about 100 s more a seed).
SEEDS ?= 0 1 2
STUDY_DIR ?= runs/study
study: $(STAMP)
	$(PY) -m tvad.cli study --preset $(PRESET) --seeds $(SEEDS) --out $(STUDY_DIR) $(ARGS)

# Two pytest workers (pytest-xdist), whole test files to a worker (--dist loadfile): the notebook chain and
# the paper rehearsal each hold one core for minutes, so one worker would leave the other core idle; a
# file's module fixtures (the rehearsal's chain) then run once. TEST_JOBS=0 runs in one process.
TEST_JOBS ?= 2
test: $(STAMP)
	$(PY) -m pytest $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile) $(ARGS)

# Regenerates assets/tiny-qwen2.5-vl/ deterministically (about an hour on 2 cores; CI never runs it).
tiny-backbone: $(STAMP)
	$(PY) -m tvad.train.pretrain_tiny --out assets/tiny-qwen2.5-vl
	$(PY) -m tvad.train.instruct_tiny --asset assets/tiny-qwen2.5-vl

benchmarks: $(STAMP)
	$(PY) benchmarks/metrics.py

clean-runs:
	rm -rf runs/
