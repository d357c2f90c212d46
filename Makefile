# The README's commands. Every target creates .venv when missing and never pulls CUDA packages:
# a torch already in the venv is kept, otherwise the CPU wheel torch==2.13.0 is installed, and
# everything else is installed against a constraints file pinning that torch (and torchvision).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
TORCHVISION_VERSION ?= 0.28.0
STAMP := $(VENV)/.musetag-installed
DEMO_OUT ?= demo-output
# offline copies of the pretrained weights and real songs, when a checkout has them beside it (CI and
# development); elsewhere the demo's last stage downloads the default pretrained model and tags the
# generated clips (or pass DEMO_AUDIO=folder-of-songs)
MUSETAG_MODEL_MIRROR ?= $(firstword $(wildcard ../shared/models))
DEMO_AUDIO ?= $(firstword $(wildcard ../shared/data/jamendo-songs/mp3))
export MUSETAG_MODEL_MIRROR

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==$(TORCH_VERSION)"
	@$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0]); print('torchvision==$(TORCHVISION_VERSION)')" > .constraints.txt
	@echo "constraints: $$(tr '\n' ' ' < .constraints.txt)"
	$(PY) -m pip install -q --disable-pip-version-check -c .constraints.txt -e ".[dev,export,serve,similarity,ray]"
	@touch $(STAMP)

demo: install
	$(VENV)/bin/musetag demo --out $(DEMO_OUT) $(if $(DEMO_AUDIO),--real-audio "$(DEMO_AUDIO)")

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .constraints.txt $(DEMO_OUT) .pytest_cache
