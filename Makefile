# Every command runs in the project's virtual environment (.venv), installed exactly from
# requirements.lock (every dependency, runtime and dev, pinned with hashes).
# The generated gRPC code beside the .proto file is committed; `make proto` regenerates it and
# `make lint` fails when it is stale.
PROTO := protos/lml/inventory/v1/inventory.proto
VENV := .venv
BIN := $(VENV)/bin
# Tools called by name (protoc-gen-mypy, lml-worker in tests) come from the venv too.
export PATH := $(CURDIR)/$(BIN):$(PATH)
# uv resolves and installs the lock; pinned so that every machine reads it the same way.
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .uv-bootstrap/bin/uv)
export UV_PYTHON_DOWNLOADS := never
# Where googleapis-common-protos keeps google/rpc/status.proto (evaluated when used).
GOOGLE_PROTOS = $(shell $(BIN)/python -c "import google.rpc, os; print(os.path.dirname(os.path.dirname(google.rpc.__path__[0])))")

.PHONY: install system-packages lock proto lint test test-all demo

# System packages when missing (needs root), then the locked project and its dev tools in .venv.
# Compiled to bytecode once, at install: uv leaves that to the first import, and where
# PYTHONDONTWRITEBYTECODE is set (it is on the machine the suite is timed on) every process
# compiled its imports again: 1-3 s for each service, gateway, worker or load process a test
# starts.
install: system-packages $(UV)
	$(UV) venv --quiet --allow-existing $(VENV)
	$(UV) pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .

system-packages:
	@command -v redis-server >/dev/null || (apt-get update && apt-get install -y redis-server)
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	@command -v luacheck >/dev/null || (apt-get update && apt-get install -y lua-check)
	@command -v valgrind >/dev/null || (apt-get update && apt-get install -y valgrind)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && apt-get install -y postgresql)

.uv-bootstrap/bin/uv:
	python3 -m venv .uv-bootstrap
	.uv-bootstrap/bin/pip install -q uv==$(UV_VERSION)

# Re-resolves requirements.lock after a change to pyproject.toml, keeping every other pin;
# `make lock UPGRADE=1` moves everything to the newest versions pyproject.toml allows.
lock: $(UV)
	$(UV) pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
		--generate-hashes --no-header $(if $(UPGRADE),--upgrade) -o requirements.lock

proto:
	$(BIN)/python -m grpc_tools.protoc -Iprotos -I$(GOOGLE_PROTOS) \
		--python_out=protos --mypy_out=protos --grpc_python_out=protos --mypy_grpc_out=protos $(PROTO)

lint:
	$(MAKE) proto
	git diff --exit-code -- protos || (echo "generated gRPC code is stale: commit what 'make proto' made" && exit 1)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m tests.lint_lua
	$(BIN)/lint-imports --no-cache
	@command -v buf >/dev/null || npm install -g @bufbuild/buf
	$(BIN)/python -m grpc_tools.protoc -Iprotos -I$(GOOGLE_PROTOS) --include_imports \
		--descriptor_set_out=$(VENV)/lml-inventory.binpb $(PROTO)
	buf lint $(VENV)/lml-inventory.binpb --path lml/inventory/v1/inventory.proto \
		--config '{"version":"v2","lint":{"use":["STANDARD"]}}'

# The slow fault-injection tests (pytest marker `slow`) run when CI is set, as in CI;
# `make test-all` runs them anywhere.
test: install lint
	$(BIN)/python -m pytest -q $(if $(CI),,-m "not slow")

test-all:
	$(MAKE) test CI=true

demo: install
	$(BIN)/python -m clients.demo run
