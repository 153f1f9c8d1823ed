# Entry points used by the README and CI. Every target first runs scripts/setup.sh, which is a
# no-op once .venv matches pyproject.toml and constraints.txt.
SHELL := /bin/bash
PY := .venv/bin/python
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
# The LeRobot interop tests' own venv (lerobot pins torch<2.11; ~8 GB, ~15 min to download the first
# time): kept outside the clone so fresh clones on the same machine (CI) reuse it.
export LEROBOT_VENV ?= $(HOME)/.cache/ivnext_world/venv-lerobot

.PHONY: setup demo test test-fast bench

setup:
	@bash scripts/setup.sh

demo: setup          ## the main job on the built-in default (simulated push video, tiny model, CPU)
	.venv/bin/ivnext-demo $(ARGS)

test: setup          ## the whole test suite, slow end-to-end tests included (what CI runs)
	$(PY) -m pytest -q $(ARGS)

test-fast: setup     ## skip tests marked slow
	$(PY) -m pytest -q -m "not slow" $(ARGS)

bench: setup         ## benchmarks: print numbers, assert nothing
	$(PY) bench/bench_envs.py
	$(PY) bench/bench_loader.py
	$(PY) bench/bench_decode.py
	$(PY) bench/bench_pretrain.py
	$(PY) bench/bench_rollout.py
	$(PY) bench/bench_planning.py
	$(PY) bench/bench_memory.py
