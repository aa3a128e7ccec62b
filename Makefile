# Every target that needs the environment depends on .venv, so any target works first on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# MODEL=all: one study across every backbone of sweeps/backbones.yaml (sweep.space=backbones).
MODEL ?= densenet121
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
STORAGE ?= sqlite:///$(CURDIR)/mlruns/optuna.db
DASHBOARD_PORT ?= 8080

# Values, not commands: what a user gives (ARGS, IMAGES, RUN, MODEL, ...) reaches a recipe as an
# environment variable GIVEN_<name>, taken as written ($(value): not even make expands it; only this
# file's own defaults, which name $(CURDIR), are expanded), and is never pasted into a shell line. A recipe quotes one ("$$GIVEN_RUN"); a list of words goes to
# pipeline.common.launch as @GIVEN_<name>, split as a shell splits words (quotes group a file name
# with a space) but never run: `;`, `$$(...)`, backquotes and `*` arrive as characters.
USER_VARS := ARGS IMAGES RUN MODEL WORKERS GPUS HOST PORT BACKEND ARTIFACTS ALL_MODELS STORAGE \
	DASHBOARD_PORT
$(foreach v,$(USER_VARS),$(eval export GIVEN_$(v) := \
	$(if $(findstring file,$(origin $(v))),$$($(v)),$$(value $(v)))))
# make itself exports a command-line variable to every recipe, expanding it first (which would run
# a $(shell ...) in it): only the GIVEN_ copies go.
unexport $(USER_VARS)
export GIVEN_MODEL_ARG := $(if $(filter all,$(value MODEL)),sweep.space=backbones,backbone=$(value MODEL))
LAUNCH = $(VENV)/bin/python -m pipeline.common.launch

.PHONY: install test test-slow lint sweep sweep-all select rerun predict describe ui dashboard server bench evaluate clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# pytest exits 5 when it collects no tests: a broken test setup, so a failure here.
test: install
	@$(LAUNCH) $(PY) -m pytest -q @GIVEN_ARGS; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Native input sizes and the 5,000-run store written through MlflowClient (about 2 minutes).
test-slow: install
	@$(LAUNCH) $(PY) -m pytest -q -m slow @GIVEN_ARGS; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-slow: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: install
	$(VENV)/bin/ruff check pipeline tests
	$(VENV)/bin/lint-imports --no-cache

# WORKERS=n: n workers on the one study, each in its own process group so that Ctrl-C reaches each
# exactly once (forwarded by this shell), which ends its trial cleanly. GPUS=0,1,..: one worker per
# listed GPU (its CUDA_VISIBLE_DEVICES), instead of WORKERS. Exit: the first failing worker's.
sweep: install
	@[[ "$$GIVEN_WORKERS" =~ ^[1-9][0-9]*$$ ]] || { echo "make sweep: WORKERS=$$GIVEN_WORKERS is not a number >= 1" >&2; exit 2; }; \
	IFS=, read -ra gpus <<< "$$GIVEN_GPUS"; n=$${#gpus[@]}; [ $$n -gt 0 ] || n=$$GIVEN_WORKERS; \
	if [ $$n -eq 1 ] && [ -z "$$GIVEN_GPUS" ]; then exec $(LAUNCH) $(PY) -m pipeline.sweep @GIVEN_MODEL_ARG @GIVEN_ARGS; fi; \
	set -m; pids=(); \
	trap 'kill -INT "$${pids[@]}" 2>/dev/null' INT; trap 'kill -TERM "$${pids[@]}" 2>/dev/null' TERM; \
	for ((i = 0; i < n; i++)); do \
		[ $${#gpus[@]} -eq 0 ] || export CUDA_VISIBLE_DEVICES=$${gpus[$$i]}; \
		$(LAUNCH) $(PY) -m pipeline.sweep @GIVEN_MODEL_ARG @GIVEN_ARGS & pids+=($$!); \
	done; set +m; \
	echo "make sweep: $$n workers (pids $${pids[*]}$${gpus:+, GPUs $$GIVEN_GPUS}) on the study of $$GIVEN_MODEL"; \
	rc=0; for p in "$${pids[@]}"; do \
		while :; do wait $$p; s=$$?; kill -0 $$p 2>/dev/null || break; done; \
		[ $$rc -ne 0 ] || rc=$$s; \
	done; exit $$rc

# One study per backbone, WORKERS of them at a time (one after another by default); no new study
# starts once one has failed, and the first failing study's exit code is make's.
sweep-all: install
	@[[ "$$GIVEN_WORKERS" =~ ^[1-9][0-9]*$$ ]] || { echo "make sweep-all: WORKERS=$$GIVEN_WORKERS is not a number >= 1" >&2; exit 2; }; \
	rc=0; pids=(); read -ra models <<< "$$GIVEN_ALL_MODELS"; \
	reap() { local live=() p; for p in "$${pids[@]}"; do \
		if kill -0 $$p 2>/dev/null; then live+=($$p); else wait $$p; s=$$?; [ $$rc -ne 0 ] || rc=$$s; fi; \
	done; pids=("$${live[@]}"); }; \
	for m in "$${models[@]}"; do \
		while reap; [ $${#pids[@]} -ge $$GIVEN_WORKERS ]; do sleep 0.2; done; \
		[ $$rc -eq 0 ] || break; \
		echo "make sweep-all: starting the study of $$m"; \
		$(LAUNCH) $(PY) -m pipeline.sweep "backbone=$$m" @GIVEN_ARGS & pids+=($$!); \
	done; \
	while reap; [ $${#pids[@]} -gt 0 ]; do sleep 0.2; done; \
	exit $$rc

select: install
	$(LAUNCH) $(PY) -m pipeline.select_best @GIVEN_ARGS

rerun: install
	@test -n "$$GIVEN_RUN" || { echo "usage: make rerun RUN=<mlflow run id> [ARGS='key=value ...']" >&2; exit 2; }
	$(LAUNCH) $(PY) -m pipeline.rerun "$$GIVEN_RUN" @GIVEN_ARGS

# IMAGES='a.png b.jpg' [ARGS='--model RUN_ID --cam out/']: one JSON line per image; quote a name
# with a space as a shell would (IMAGES="'scan 1.png' b.jpg").
predict: install
	@test -n "$$GIVEN_IMAGES" || { echo "usage: make predict IMAGES='a.png b.jpg' [ARGS='--model champion|RUN_ID --cam DIR']" >&2; exit 2; }
	$(LAUNCH) $(PY) -m pipeline.predict @GIVEN_IMAGES @GIVEN_ARGS

# External validation: ARGS='dataset=imagefolder dataset.root=/data/kermany evaluate.label_map=...'
evaluate: install
	$(LAUNCH) $(PY) -m pipeline.evaluate @GIVEN_ARGS

describe: install
	$(LAUNCH) $(PY) -m pipeline.describe_data @GIVEN_ARGS

bench: install
	$(LAUNCH) $(PY) -m pipeline.bench @GIVEN_ARGS

ui: install
	$(VENV)/bin/mlflow ui --host "$$GIVEN_HOST" --port "$$GIVEN_PORT" \
		--backend-store-uri "sqlite:///$(CURDIR)/mlruns/mlflow.db" \
		--default-artifact-root "$(CURDIR)/mlruns/artifacts"

# Optuna's dashboard on the study storage (STORAGE: any Optuna RDB URL), on 127.0.0.1:$(DASHBOARD_PORT).
dashboard: install
	$(VENV)/bin/optuna-dashboard "$$GIVEN_STORAGE" --host "$$GIVEN_HOST" --port "$$GIVEN_DASHBOARD_PORT"

# Workers then log with tracking.uri=http://<host>:$(PORT); ARGS go to `mlflow server`. MLflow's job
# runner (GenAI features, unused here: eight more processes) stays off unless the variable says so.
server: install
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
	$(LAUNCH) $(VENV)/bin/mlflow server --host "$$GIVEN_HOST" --port "$$GIVEN_PORT" \
		--backend-store-uri "$$GIVEN_BACKEND" --serve-artifacts \
		--artifacts-destination "$$GIVEN_ARTIFACTS" @GIVEN_ARGS

clean:
	rm -rf mlruns/cache
