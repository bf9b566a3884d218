# DT-RAG's image: `docker build -t dt-rag .`, run by docker-compose.staging.yml.
# Stage 1 builds the virtual environment with the Makefile's own install commands; stage 2 carries
# only that environment and the code, and runs as an unprivileged user.
FROM python:3.11-slim-bookworm AS build
WORKDIR /app
# gcc and headers for the few dependencies that compile when no wheel fits.
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv .venv && .venv/bin/pip install --quiet --upgrade pip
COPY requirements.txt pyproject.toml README.md ./
# The lock first, so a code change does not reinstall the dependencies (a cached layer).
RUN .venv/bin/pip install --quiet -r requirements.txt
COPY apps ./apps
COPY alembic ./alembic
COPY alembic.ini ./
RUN .venv/bin/pip install --quiet --no-deps -e .

FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system dtrag && useradd --system --gid dtrag --home-dir /app --shell /usr/sbin/nologin dtrag
WORKDIR /app
COPY --from=build --chown=dtrag:dtrag /app /app
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production
USER dtrag
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
CMD ["dtrag", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
