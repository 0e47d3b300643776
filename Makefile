# Postgres Production Lab. The two commands that matter:
#   make lab    start everything and open JupyterLab
#   make test   run the whole test suite (what CI runs)
# Both create .venv and install the pinned dependencies when needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
SCALE  ?=
# PostgreSQL major for the lab's own server: `make test PG=18` (the same as
# LAB_PG_VERSION=18). Empty: the system's newest PostgreSQL (15 on Debian 12).
PG     ?=
ifneq ($(strip $(PG)),)
export LAB_PG_VERSION := $(PG)
endif
# Three pytest workers on two cores: notebook runs spend much of their time waiting on
# kernels and on the server. Measured on this 2-core machine, fresh clone: 560 tests in
# 415 s at -n 3 (quiet machine); 541 tests in 451 s at -n 2 (with other work running).
WORKERS ?= 3
JUPYTER_ROOT_FLAG := $(shell [ "$$(id -u)" = "0" ] && echo --allow-root)
export PLOOMBER_STATS_ENABLED := false

.PHONY: lab test test-grading test-fast install db db-stop doctor data notebooks grade bench site clean help

help:
	@echo "make lab        start PostgreSQL, build the dataset if missing, open JupyterLab"
	@echo "make test       run the whole test suite (solutions, learner copies, decoys, unit tests)"
	@echo "make db         start (or find) PostgreSQL and print its URL;  make db-stop stops it"
	@echo "make test PG=18 the same on PostgreSQL 18 (downloaded once when not installed)"
	@echo "make test-grading  grade every reference as a learner's role (CI runs it too)"
	@echo "make doctor     say what works and what to fix"
	@echo "make data SCALE=tiny|small|production   (re)build the dataset at a scale"
	@echo "make notebooks  regenerate learner notebooks from solutions/"
	@echo "make grade SUBMISSIONS=dir/   grade a class's notebooks"
	@echo "make bench      measure data generation and loading (takes minutes)"
	@echo "make site       run every solution and render it with its outputs into site/ (SCALE=small)"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "Could not create a virtual environment: install python3-venv (apt) or use a Python with venv."; exit 1; }
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

db: $(STAMP)
	@$(PY) -m labs db

db-stop: $(STAMP)
	@$(PY) -m labs db-stop

doctor: $(STAMP)
	@$(PY) -m labs doctor

data: $(STAMP)
	@$(PY) -m labs data $(SCALE)

notebooks: $(STAMP)
	@$(PY) -m labs notebooks

lab: $(STAMP)
	@$(PY) -m labs db
	@$(PY) -m labs data --if-missing $(SCALE)
	@$(PY) -m labs jupyterlab-settings
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser $(JUPYTER_ROOT_FLAG) --ServerApp.root_dir=$(CURDIR)

# The default suite runs at tiny scale; one notebook stays on one worker (WORKERS above).
# Then the tests that stop a shared service (the replica, PgBouncer) run alone.
test: $(STAMP)
	@$(PY) -m labs db
	@$(PY) -m tests.browser
	LAB_SCALE=tiny $(PY) -m pytest -n $(WORKERS) --dist loadscope -m "not stops_shared and not grading_sweep" --durations=15 $(PYTEST_ARGS)
	LAB_SCALE=tiny $(PY) -m pytest -p no:xdist -q -m stops_shared $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Every reference graded as a learner's role, as an instructor's `make grade` runs it
# (minutes: CI runs it after the suite).
test-grading: $(STAMP)
	LAB_SCALE=tiny $(PY) -m pytest -p no:xdist -q -m grading_sweep tests/test_grading.py $(PYTEST_ARGS)

test-fast: $(STAMP)
	LAB_SCALE=tiny $(PY) -m pytest -n $(WORKERS) --dist loadscope -m "not notebook and not stops_shared and not grading_sweep" $(PYTEST_ARGS)

grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "Usage: make grade SUBMISSIONS=path/to/submissions/"; exit 2; }
	@$(PY) -m labs db >/dev/null
	@$(PY) -m labs grade $(SUBMISSIONS) --out grading-report $(GRADE_ARGS)

bench: $(STAMP)
	@$(PY) -m labs db
	$(PY) bench/bench_load.py --rows $(or $(ROWS),10000000)
	$(PY) bench/bench_constraints.py --scale small

# Every solution executed (small scale unless SCALE=tiny|production; ONLY=00,07 for some)
# and rendered with its outputs into site/: open site/index.html.
site: $(STAMP)
	@$(PY) -m labs db
	@$(PY) -m labs site $(if $(SCALE),--scale $(SCALE)) $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf grading-report .pytest_cache
