# The two commands a newcomer needs (both do all set-up on a fresh machine):
#   make run    -- create .venv, install Lanner, run the main job on an embedded image
#   make test   -- install with the test extras and run the test suite
# Plus: make sanitize (native-op tests under ASan+UBSan), make bench (benchmarks/;
# CELEBA_FACES=DIR, the celeba-faces folder, adds the composed scenes of benchmarks/pipeline).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
OUT    ?= out
# Debian packages: FFTW3 for the tracker, the aarch64 cross compiler for Jetson
# packages, OpenCV's cascades and sample media for benchmarks, clang-format for `make lint`.
APT_PACKAGES := pkg-config libfftw3-dev g++-aarch64-linux-gnu opencv-data opencv-doc clang-format

.PHONY: run test lint sanitize bench sysdeps venv install install-dev clean

sysdeps:
	@missing="$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages: $$missing -- run: sudo apt-get install $$missing" >&2; exit 1; \
	  fi; \
	fi

venv:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) install -q --upgrade pip "setuptools>=69" wheel "pybind11>=2.12" "cmake>=3.18" ninja

# Runtime only: no PyTorch, no TVM.
install: sysdeps venv
	$(PIP) install -q --no-build-isolation .

# Everything the tests and benchmarks use. facenet-pytorch is installed without its
# (conflicting) pins: we only read the MTCNN weights shipped in its wheel. Where nvcc is
# found, NVIDIA's cuFFT wheel (the `cuda` extra) is installed first, so that the build
# compiles the tracker's CUDA batch path too (CUDA 13 toolkits come without cuFFT).
install-dev: sysdeps venv
	@if command -v nvcc >/dev/null 2>&1 || test -x /usr/local/cuda/bin/nvcc; then \
	  $(PIP) install -q "nvidia-cufft>=12"; fi  # = setup.py's `cuda` extra
	$(PIP) install -q --no-build-isolation ".[dev,compile,torch]"
	$(PIP) install -q --no-deps facenet-pytorch==2.6.0

# The main job: detect faces in the bundled demo photo; writes the annotated image and JSON.
run: install
	$(BIN)/lanner detect --demo --out $(OUT)/astronaut_faces.jpg --json $(OUT)/astronaut_faces.json

# ruff (lint + format, pyproject.toml) over the Python tree, clang-format (.clang-format) over csrc/.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	find csrc -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' | xargs clang-format --dry-run --Werror

test: install-dev
	$(BIN)/python -m pytest

# The native-op tests against an ASan+UBSan build of lanner._C, installed aside in
# build/asan-site and put first on the path. Python itself is not instrumented, so
# libasan is preloaded and leak detection (CPython's arenas) is off.
sanitize: install-dev
	LANNER_SANITIZE=address,undefined $(PIP) install -q --no-build-isolation --no-deps --upgrade --target build/asan-site .
	PYTHONPATH=build/asan-site \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	$(BIN)/python -m pytest -m native -p no:cacheprovider -q

bench: install-dev
	$(BIN)/python benchmarks/nms/bench_nms.py
	$(BIN)/python benchmarks/compile/bench_compile.py
	$(BIN)/python benchmarks/detection/bench_detection.py --json $(OUT)/bench_detection.json
	$(BIN)/python benchmarks/tracking/bench_tracking.py --split report --out benchmarks/tracking
	$(BIN)/python benchmarks/compile/bench_lanner_bench.py
	$(BIN)/python benchmarks/pipeline/bench_pipeline.py $(if $(CELEBA_FACES),--data $(CELEBA_FACES)) --json $(OUT)/bench_pipeline.json

clean:
	rm -rf build $(OUT) *.egg-info
