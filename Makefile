# Two commands on a fresh machine: `make demo` (set up, compile a model, run it) and `make test`.
PYTHON ?= python3
STAMP := .venv-ready

$(STAMP): pyproject.toml .ci/install-system-deps.sh autobatch/_recorder.c
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[dev]"
	PYTHON=$(PYTHON) bash .ci/install-system-deps.sh  # lld-19, PoCL, PostgreSQL for the tests
	touch $(STAMP)

.PHONY: install demo test test-all
install: $(STAMP)

demo: $(STAMP)
	ember bench examples/quickstart.py:gpt2 --baselines eager,torch.compile

test: $(STAMP)
	$(PYTHON) -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(PYTHON) -m pytest -q
