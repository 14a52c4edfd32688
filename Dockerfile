FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir -e '.[dev]' && make proto
EXPOSE 50051
CMD ["lml-inventory", "serve", "--listen", "0.0.0.0:50051"]
