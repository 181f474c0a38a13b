# The two set-up commands (README): `make run` and `make test`. Each bootstraps .venv from the project's files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
CONFIG ?= jobs/configs/main.yaml

.PHONY: run test venv clean s3-up s3-down bench cluster-up cluster-down cluster-status

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first and alone: pip takes the CPU wheel on disk instead of the CUDA build from the registry.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev,search,realdata]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) jobs/main.py --config $(CONFIG)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	for b in benchmarks/[!_]*.py; do $(PY) $$b || exit 1; done

s3-up: $(STAMP)
	$(PY) infra/local_s3.py start

s3-down: $(STAMP)
	$(PY) infra/local_s3.py stop

# A local autoscaling Ray cluster with cluster/aws.yaml's node types (Ray's fake multi-node provider; docs/cluster.md).
# IDLE=0.5 shortens the idle timeout (minutes) to watch idle workers go away.
cluster-up: $(STAMP)
	$(PY) cluster/local_autoscaler.py up $(if $(IDLE),--idle-timeout-minutes $(IDLE))

cluster-status: $(STAMP)
	$(PY) cluster/local_autoscaler.py status

cluster-down: $(STAMP)
	$(PY) cluster/local_autoscaler.py down

clean:
	rm -rf $(VENV) runs .pytest_cache
