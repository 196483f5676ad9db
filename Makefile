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

.PHONY: demo test install clean bench

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

bench: install
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	$(PY) benchmarks/augment.py
	$(PY) benchmarks/resample.py
	$(PY) benchmarks/evaluate.py
	$(PY) benchmarks/generate.py
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e "contrib/setforge-text[bench]" -e "contrib/setforge-audio[bench]"
	$(PY) contrib/setforge-text/benchmarks/char_noise.py
	$(PY) contrib/setforge-audio/benchmarks/waveform.py

clean:
	rm -rf $(VENV) runs build dist *.egg-info
