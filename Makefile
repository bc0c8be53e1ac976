# Two commands on a fresh machine: `make run` and `make test`.
# Both create the virtual environment in .venv when it is missing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The CPU build of PyTorch; override (e.g. TORCH=torch) to let pip choose.
TORCH  ?= torch==2.13.0
OUT    ?= runs/run
# openmm-torch (TorchForce CVs, openmm_biomd/enhanced/torch_cv.py): PyPI's openmmtorch 1.5 wheel is
# built against PyPI's (CUDA) torch 2.9.1 and does not load with the CPU torch above, so it gets a
# second environment nested inside .venv. Only the tests use it (`make run` does not depend on it);
# it works on a CPU-only machine (CPU platform), ~7 GB on disk. The same wheel needs OpenMM 8.4/8.5:
# it does not import with 8.3, and with 8.6 copying a TorchForce (as CustomCVForce does) segfaults.
TORCH_ENV   := $(VENV)/openmm-torch
TORCH_PY    := $(TORCH_ENV)/bin/python
TORCH_STAMP := $(TORCH_ENV)/.installed
OPENMM_TORCH ?= torch==2.9.1 openmmtorch==1.5 "openmm>=8.4,<8.6"

.PHONY: run test setup openmm-torch clean

setup: $(STAMP) $(TORCH_STAMP)

openmm-torch: $(TORCH_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# Order-only on $(STAMP): the main environment (the .venv folder) is made first, never concurrently.
# The project itself goes in without its dependencies: torch_cv.py needs only torch, numpy and openmm.
$(TORCH_STAMP): pyproject.toml | $(STAMP)
	test -x $(TORCH_PY) || $(PYTHON) -m venv $(TORCH_ENV)
	$(TORCH_PY) -m pip install --quiet $(OPENMM_TORCH) numpy
	$(TORCH_PY) -m pip install --quiet --no-deps -e .
	touch $(TORCH_STAMP)

run: $(STAMP)
	$(VENV)/bin/biomd run --out $(OUT)

test: $(STAMP) $(TORCH_STAMP)
	OPENMM_CPU_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) runs build *.egg-info
