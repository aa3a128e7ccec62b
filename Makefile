# Every target that needs the environment depends on .venv, so any target works first on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MODEL ?= densenet121
WORKERS ?= 1
RUN ?=
ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 5000
# Backbones of `make sweep-all`: paper 000's five, then papers 001-004's additions.
ALL_MODELS ?= xception vgg19 resnet50 densenet121 inception_v3 vgg16 resnet152v2 mobilenet_v3_large resnet50_resnet152v2_concat

.PHONY: install test test-slow lint sweep sweep-all select rerun predict describe ui bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# pytest exits 5 when it collects no tests: a broken test setup, so a failure here.
test: install
	@$(PY) -m pytest -q $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-slow: install
	$(PY) -m pytest -q -m slow $(ARGS)

lint: install
	$(VENV)/bin/ruff check pipeline tests

sweep: install
	$(PY) -m pipeline.sweep backbone=$(MODEL) $(ARGS)

sweep-all: install
	@for m in $(ALL_MODELS); do \
		$(PY) -m pipeline.sweep backbone=$$m $(ARGS) || exit $$?; \
	done

select: install
	$(PY) -m pipeline.select_best $(ARGS)

rerun: install
	@test -n "$(RUN)" || { echo "usage: make rerun RUN=<mlflow run id> [ARGS='key=value ...']" >&2; exit 2; }
	$(PY) -m pipeline.rerun $(RUN) $(ARGS)

describe: install
	$(PY) -m pipeline.describe_data $(ARGS)

bench: install
	$(PY) -m pipeline.bench $(ARGS)

ui: install
	$(VENV)/bin/mlflow ui --host $(HOST) --port $(PORT) \
		--backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts

clean:
	rm -rf mlruns/cache
