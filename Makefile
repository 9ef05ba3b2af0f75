# sisafs: see README.md. Every target installs what it needs first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all bench lint clean

install: $(STAMP)

$(STAMP): scripts/install.sh pyproject.toml setup.py
	VENV=$(VENV) scripts/install.sh
	touch $(STAMP)

demo: install
	$(PY) scripts/demo.py

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m ""

bench: install
	$(PY) bench/copy_read.py

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf build demo .pytest_cache
