# Development entry points.  `make test` works on a fresh clone: it creates .venv, installs
# rnnkit with its test extras, and runs the default (not slow) tests.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch used for development and CI; override for another build, e.g.
#   make test TORCH_SPEC="torch>=2.4"
TORCH_SPEC ?= torch==2.13.0

.PHONY: install quickstart test test-all lint bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,dev]"
	touch $@

install: $(VENV)/.installed

# The main job: a character-level LSTM on the English text that ships with Python, on the CPU,
# 15 epochs, about 4 minutes on an idle 2-core CPU (about 11 under full load); prints progress,
# validation bits per character and a sample.
quickstart: $(VENV)/.installed
	$(VENV)/bin/rnnkit train lm --epochs 15 --dropout 0.25 --run runs/quickstart-$$(date +%Y%m%d-%H%M%S)

# The Triton kernels' tests run in Triton's interpreter on the CPU, which must be chosen before
# anything imports triton (torch._dynamo does, as soon as a test compiles): in a process of their own.
TRITON_TESTS := tests/engine/test_triton.py

test: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"
	TRITON_INTERPRET=1 $(PY) -m pytest -q -m "not slow" $(TRITON_TESTS)

test-all: $(VENV)/.installed
	$(PY) -m pytest -q
	TRITON_INTERPRET=1 $(PY) -m pytest -q $(TRITON_TESTS)

# ruff, configured in pyproject.toml ([tool.ruff])
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check rnnkit tests benchmarks experiments

bench: $(VENV)/.installed
	$(PY) benchmarks/speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
