FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir -e '.[dev]' && make proto
EXPOSE 50051
# Listening on every interface needs API keys: mount a key file and point LML_API_KEYS at it
# (`lml-inventory add-key keys.json NAME --scope sell` makes one), e.g.
#   docker run -v $PWD/keys.json:/keys/keys.json:ro -e LML_API_KEYS=/keys/keys.json ...
# Without it the service refuses to start and says so.
CMD ["lml-inventory", "serve", "--listen", "0.0.0.0:50051"]
