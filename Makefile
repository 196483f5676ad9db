# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# torch and torchvision lie on this machine's disk at these versions (pip takes them from there).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

# The community-style distributions under contrib/, each with its own pyproject.toml and tests.
CONTRIB := contrib/setforge-text contrib/setforge-audio contrib/setforge-ctgan
# torch as installed, so no contrib dependency (ctgan asks for torch>=2.0) can replace it.
CONSTRAINTS := $(VENV)/torch-constraints.txt

.PHONY: demo test install clean bench bench-quick

$(VENV)/.installed: pyproject.toml $(CONTRIB:%=%/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip freeze | grep -E '^torch(vision)?==' > $(CONSTRAINTS)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev]" $(CONTRIB:%=-e %)
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/setforge demo --force

test: install
	$(PY) -m pytest -q -p no:cacheprovider

# Every benchmark through benchmarks/run_all.py: one table of side-by-side ratios, results JSON
# in benchmarks/results/ (quick: results/quick/). Peers that are not installed get a row saying so.
BENCH_DEPS := $(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev,bench]" -e "contrib/setforge-text[bench]" \
	-e "contrib/setforge-audio[bench]" || echo "some benchmark peers could not be installed; their rows say so"

bench: install
	$(BENCH_DEPS)
	$(PY) benchmarks/run_all.py

bench-quick: install
	$(PY) benchmarks/run_all.py --quick

clean:
	rm -rf $(VENV) runs build dist *.egg-info
