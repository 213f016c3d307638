# The two commands a new user runs: `make demo` and `make test`.
# Both create or reuse .venv and install the project with pinned dependencies.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS ?= build/models
PORT ?= 8080

.PHONY: demo test lint venv models clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e '.[dev]'
	touch $@

models: $(STAMP)
	$(BIN)/python examples/train.py --out $(MODELS)

demo: models
	@echo
	@echo "Serving breast-cancer v1 on http://localhost:$(PORT). In another terminal:"
	@echo "  curl -s -X POST localhost:$(PORT)/v2/models/breast-cancer/infer -d @$(MODELS)/breast-cancer-request.json"
	@echo "  curl -s localhost:$(PORT)/metrics | grep modeldeploy_feature_value_bucket | head"
	@echo "Stop with Ctrl-C."
	@echo
	$(BIN)/modeldeploy serve --model $(MODELS)/breast-cancer-v1.onnx --name breast-cancer --version 1 --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .hypothesis
