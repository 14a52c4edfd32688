# Generated gRPC code lives beside the .proto files and is never committed.
PROTO := protos/lml/inventory/v1/inventory.proto
GOOGLE_PROTOS := $(shell python -c "import google.rpc, os; print(os.path.dirname(os.path.dirname(google.rpc.__path__[0])))")

.PHONY: proto lint test demo

proto:
	python -m grpc_tools.protoc -Iprotos -I$(GOOGLE_PROTOS) \
		--python_out=protos --mypy_out=protos --grpc_python_out=protos --mypy_grpc_out=protos $(PROTO)

lint: proto
	ruff check .
	ruff format --check .
	mypy
	python -m grpc_tools.protoc -Iprotos -I$(GOOGLE_PROTOS) --include_imports \
		--descriptor_set_out=/tmp/lml-inventory.binpb $(PROTO)
	buf lint /tmp/lml-inventory.binpb --path lml/inventory/v1/inventory.proto --config '{"version":"v2","lint":{"use":["STANDARD"]}}'
