# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# torch and torchvision lie on this machine's disk at these versions (pip takes them from there).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test install clean bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/setforge demo --force

test: install
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	$(PY) benchmarks/augment.py
	$(PY) benchmarks/resample.py
	$(PY) benchmarks/evaluate.py
	$(PY) benchmarks/generate.py

clean:
	rm -rf $(VENV) runs build dist *.egg-info
