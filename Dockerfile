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
# /keys: where compose's api-keys volume is mounted; a new volume takes this owner, so the
# services (not root) can write and read the key file and their secrets.
RUN mkdir /keys && chown lml /keys
ENV PATH=/opt/lml/bin:$PATH
USER lml
EXPOSE 50051 8080
# Listening on every interface needs API keys: mount a key file and point LML_API_KEYS at it
# (`lml-inventory add-key keys.json NAME --scope sell` makes one), e.g.
#   docker run -v $PWD/keys.json:/keys/keys.json:ro -e LML_API_KEYS=/keys/keys.json ...
# Without it the service refuses to start and says so.
CMD ["lml-inventory", "serve", "--listen", "0.0.0.0:50051"]
