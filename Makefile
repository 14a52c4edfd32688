# Generated gRPC code lives beside the .proto files and is never committed: `make proto` makes it.
PROTO := protos/lml/inventory/v1/inventory.proto
# Where googleapis-common-protos keeps google/rpc/status.proto (evaluated when used).
GOOGLE_PROTOS = $(shell python -c "import google.rpc, os; print(os.path.dirname(os.path.dirname(google.rpc.__path__[0])))")

.PHONY: install proto lint test demo

# System packages when missing (needs root), then the project and its dev tools.
install:
	@command -v redis-server >/dev/null || (apt-get update && apt-get install -y redis-server)
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && apt-get install -y postgresql)
	pip install -q -e '.[dev,bench]'
	$(MAKE) proto

proto:
	python -m grpc_tools.protoc -Iprotos -I$(GOOGLE_PROTOS) \
		--python_out=protos --mypy_out=protos --grpc_python_out=protos --mypy_grpc_out=protos $(PROTO)

lint: proto
	ruff check .
	ruff format --check .
	mypy
	@command -v buf >/dev/null || npm install -g @bufbuild/buf
	python -m grpc_tools.protoc -Iprotos -I$(GOOGLE_PROTOS) --include_imports \
		--descriptor_set_out=/tmp/lml-inventory.binpb $(PROTO)
	buf lint /tmp/lml-inventory.binpb --path lml/inventory/v1/inventory.proto \
		--config '{"version":"v2","lint":{"use":["STANDARD"]}}'

test: install lint
	python -m pytest -q

demo: install
	python -m inventory.cli demo
