# Build stage: the wheel from the source, and a venv with it and its locked runtime dependencies.
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY . .
RUN uv build --wheel --out-dir /dist \
    && uv venv /opt/lml \
    && uv pip install --python /opt/lml/bin/python --constraint requirements.lock \
        "$(ls /dist/*.whl)[gateway]"

# Runtime: the venv only (service, worker, layouts, gateway), no compiler, no dev tools, no root.
FROM python:3.11-slim
COPY --from=build /opt/lml /opt/lml
RUN useradd --system --no-create-home lml
ENV PATH=/opt/lml/bin:$PATH
USER lml
EXPOSE 50051 8080
CMD ["lml-inventory", "serve", "--listen", "0.0.0.0:50051"]
