# Two entry points for a fresh machine: `make demo` and `make test`. Both install everything first
# (tools/setup_env.sh) and are quick when the environment is already up to date.
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.scener1-installed
OUT    ?= outputs/demo
PYTEST_ARGS ?=

.PHONY: install demo test test-fast clean

install: $(STAMP)

$(STAMP): pyproject.toml tools/setup_env.sh
	VENV=$(VENV) bash tools/setup_env.sh
	@touch $(STAMP)

demo: install
	$(BIN)/scener1 demo --out $(OUT)

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# Everything but the tests marked slow (for quick local iterations; CI runs `make test`).
test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) outputs build *.egg-info .pytest_cache
