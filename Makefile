# Every target that needs the environment depends on .venv, so any target works first on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MODEL ?= densenet121
# MODEL=all: one study across every backbone of sweeps/backbones.yaml (sweep.space=backbones).
MODEL_ARG = $(if $(filter all,$(MODEL)),sweep.space=backbones,backbone=$(MODEL))
# Worker processes `make sweep` starts on the study (one trial each at a time), or one per GPU listed.
WORKERS ?= 1
GPUS ?=
RUN ?=
IMAGES ?=
ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 5000
# `make server`: the team's MLflow tracking server. Its own store (a postgresql:// URL for a team),
# and the artifact root it serves to every worker, so remote workers upload through it.
BACKEND ?= sqlite:///$(CURDIR)/mlruns/server.db
ARTIFACTS ?= $(CURDIR)/mlruns/server-artifacts
# Backbones of `make sweep-all`: paper 000's five, then papers 001-004's additions.
ALL_MODELS ?= xception vgg19 resnet50 densenet121 inception_v3 vgg16 resnet152v2 mobilenet_v3_large resnet50_resnet152v2_concat

.PHONY: install test test-slow lint sweep sweep-all select rerun predict describe ui dashboard server bench evaluate clean

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

# Native input sizes and the 5,000-run store written through MlflowClient (about 2 minutes).
test-slow: install
	@$(PY) -m pytest -q -m slow $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-slow: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: install
	$(VENV)/bin/ruff check pipeline tests
	$(VENV)/bin/lint-imports --no-cache

# WORKERS=n: n workers on the one study, each in its own process group so that Ctrl-C reaches each
# exactly once (forwarded by this shell), which ends its trial cleanly. GPUS=0,1,..: one worker per
# listed GPU (its CUDA_VISIBLE_DEVICES), instead of WORKERS. Exit: the first failing worker's.
sweep: install
	@[[ "$(WORKERS)" =~ ^[1-9][0-9]*$$ ]] || { echo "make sweep: WORKERS=$(WORKERS) is not a number >= 1" >&2; exit 2; }; \
	gpus=($$(echo '$(GPUS)' | tr ',' ' ')); n=$${#gpus[@]}; [ $$n -gt 0 ] || n=$(WORKERS); \
	if [ $$n -eq 1 ] && [ -z '$(GPUS)' ]; then exec $(PY) -m pipeline.sweep $(MODEL_ARG) $(ARGS); fi; \
	set -m; pids=(); \
	trap 'kill -INT "$${pids[@]}" 2>/dev/null' INT; trap 'kill -TERM "$${pids[@]}" 2>/dev/null' TERM; \
	for ((i = 0; i < n; i++)); do \
		[ $${#gpus[@]} -eq 0 ] || export CUDA_VISIBLE_DEVICES=$${gpus[$$i]}; \
		$(PY) -m pipeline.sweep $(MODEL_ARG) $(ARGS) & pids+=($$!); \
	done; set +m; \
	echo "make sweep: $$n workers (pids $${pids[*]}$${gpus:+, GPUs $(GPUS)}) on the study of $(MODEL)"; \
	rc=0; for p in "$${pids[@]}"; do \
		while :; do wait $$p; s=$$?; kill -0 $$p 2>/dev/null || break; done; \
		[ $$rc -ne 0 ] || rc=$$s; \
	done; exit $$rc

# One study per backbone, WORKERS of them at a time (one after another by default); no new study
# starts once one has failed, and the first failing study's exit code is make's.
sweep-all: install
	@[[ "$(WORKERS)" =~ ^[1-9][0-9]*$$ ]] || { echo "make sweep-all: WORKERS=$(WORKERS) is not a number >= 1" >&2; exit 2; }; \
	rc=0; pids=(); \
	reap() { local live=() p; for p in "$${pids[@]}"; do \
		if kill -0 $$p 2>/dev/null; then live+=($$p); else wait $$p; s=$$?; [ $$rc -ne 0 ] || rc=$$s; fi; \
	done; pids=("$${live[@]}"); }; \
	for m in $(ALL_MODELS); do \
		while reap; [ $${#pids[@]} -ge $(WORKERS) ]; do sleep 0.2; done; \
		[ $$rc -eq 0 ] || break; \
		echo "make sweep-all: starting the study of $$m"; \
		$(PY) -m pipeline.sweep backbone=$$m $(ARGS) & pids+=($$!); \
	done; \
	while reap; [ $${#pids[@]} -gt 0 ]; do sleep 0.2; done; \
	exit $$rc

select: install
	$(PY) -m pipeline.select_best $(ARGS)

rerun: install
	@test -n "$(RUN)" || { echo "usage: make rerun RUN=<mlflow run id> [ARGS='key=value ...']" >&2; exit 2; }
	$(PY) -m pipeline.rerun $(RUN) $(ARGS)

# IMAGES='a.png b.jpg' [ARGS='--model RUN_ID --cam out/']: one JSON line per image.
predict: install
	@test -n "$(IMAGES)" || { echo "usage: make predict IMAGES='a.png b.jpg' [ARGS='--model champion|RUN_ID --cam DIR']" >&2; exit 2; }
	$(PY) -m pipeline.predict $(IMAGES) $(ARGS)

# External validation: ARGS='dataset=imagefolder dataset.root=/data/kermany evaluate.label_map=...'
evaluate: install
	$(PY) -m pipeline.evaluate $(ARGS)

describe: install
	$(PY) -m pipeline.describe_data $(ARGS)

bench: install
	$(PY) -m pipeline.bench $(ARGS)

ui: install
	$(VENV)/bin/mlflow ui --host $(HOST) --port $(PORT) \
		--backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts

# Optuna's dashboard on the study storage (STORAGE: any Optuna RDB URL), on 127.0.0.1:$(DASHBOARD_PORT).
STORAGE ?= sqlite:///$(CURDIR)/mlruns/optuna.db
DASHBOARD_PORT ?= 8080
dashboard: install
	$(VENV)/bin/optuna-dashboard '$(STORAGE)' --host $(HOST) --port $(DASHBOARD_PORT)

# Workers then log with tracking.uri=http://<host>:$(PORT); ARGS go to `mlflow server`. MLflow's job
# runner (GenAI features, unused here: eight more processes) stays off unless the variable says so.
server: install
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
	$(VENV)/bin/mlflow server --host $(HOST) --port $(PORT) --backend-store-uri '$(BACKEND)' \
		--serve-artifacts --artifacts-destination '$(ARTIFACTS)' $(ARGS)

clean:
	rm -rf mlruns/cache
