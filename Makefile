# The two commands a new user runs: `make demo` and `make test`.
# Both create or reuse .venv and install the project with pinned dependencies.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODELS ?= build/models
PORT ?= 8080

# Debian packages the tests need; the cluster launcher installs its own (containerd, runc,
# CNI plugins, iptables, umoci, debootstrap) when missing. Installed only when run as root.
# prometheus: the telemetry tests start their own on a free port; the system service the
# package installs is disabled (on a machine with systemd) so nothing else holds :9090.
# redis-server: the feedback tests start their own on a free port (the feedback store); the
# package's system service is disabled the same way.
SYSTEM_PACKAGES := shellcheck debootstrap umoci runc prometheus redis-server

.PHONY: demo demo-down serve cluster-demo cluster-binaries test lint venv models clean system-packages

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e '.[dev]'
	touch $@

models: $(STAMP)
	$(BIN)/python examples/train.py --out $(MODELS)

# The whole story on the local cluster (root; no Docker): cluster, image, chart, a model under
# load, a promotion, a rollback and a drift flag, then a summary. The first run compiles
# Kubernetes from Go modules (about 26 minutes on two cores, with progress); later runs take
# about 5 minutes. Everything stays up for you to look at; `make demo-down` removes it.
demo: $(STAMP) system-packages cluster-binaries
	$(BIN)/python examples/demo.py

demo-down: $(STAMP)
	$(BIN)/python examples/demo.py down

# One model served on localhost, no cluster (the first demo).
serve: models
	@echo
	@echo "Serving breast-cancer v1 on http://localhost:$(PORT). In another terminal:"
	@echo "  curl -s -X POST localhost:$(PORT)/v2/models/breast-cancer/infer -d @$(MODELS)/breast-cancer-request.json"
	@echo "  curl -s localhost:$(PORT)/metrics | grep modeldeploy_feature_value_bucket | head"
	@echo "Stop with Ctrl-C."
	@echo
	$(BIN)/modeldeploy serve --model $(MODELS)/breast-cancer-v1.onnx --name breast-cancer --version 1 --port $(PORT)

# The earlier, shorter walk-through: install with the chart, a wrong digest, deletion.
cluster-demo: $(STAMP)
	bash examples/cluster-demo.sh

# Kubernetes, helm and kstatus from Go modules, cached; a cold build shows how far it is
# (pytest would capture its progress, so it is built here first).
cluster-binaries: $(STAMP)
	@$(BIN)/python -m e2e.cluster.binaries >/dev/null
	@$(BIN)/python -m e2e.cluster.binaries kstatus >/dev/null

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make test needs these Debian packages:$$missing (run as root or install them)"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  case "$$missing" in *prometheus*) \
	    if [ -d /run/systemd/system ]; then systemctl disable --now prometheus prometheus-node-exporter || true; fi;; \
	  esac; \
	  case "$$missing" in *redis-server*) \
	    if [ -d /run/systemd/system ]; then systemctl disable --now redis-server || true; fi;; \
	  esac; \
	fi

test: system-packages lint cluster-binaries
	$(BIN)/python -m pytest

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .hypothesis
