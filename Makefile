# The README's two commands: `make demo` and `make test`. Both create .venv when missing and install
# the core and every plugin under plugins/ (editable) into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PLUGINS := $(wildcard plugins/*/pyproject.toml)

.PHONY: demo test install clean

demo: $(STAMP)
	$(VENV)/bin/lightning-gan fit --recipe quickstart

test: $(STAMP)
	$(PY) -m pytest -n auto --dist loadscope

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml setup.py $(PLUGINS)
	$(PY) -m pip install --quiet -e '.[test]' $(foreach p,$(dir $(PLUGINS)),-e $(p))
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs lightning_logs
