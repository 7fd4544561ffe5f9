# syntax=docker/dockerfile:1
#
# One Dockerfile, several images (pick one with `--target`); each installs only its own
# extra of pyproject.toml, at the exact versions uv.lock pins (hashes checked):
#
#   mlflow    MLflow tracking server + model registry (port 5000)      extra `mlflow`
#   pipeline  `dvc repro`: trains, evaluates and registers the model     extra `pipeline`
#   score     batch scoring: `python -m pipeline.score INPUT... --output OUT`   extra `api`
#   app       Streamlit dashboard (port 8501)                          extra `app`
#   api       FastAPI service (port 8000), the default (last) target   extra `api`
#
# The other stages are internal: `uv` (the installer), `deps-*` (one virtualenv per extra,
# copied whole into its image, so neither uv nor its download cache ships; the cache is a
# build cache mount shared by the four) and `runtime` (the non-root user and the
# environment every image shares). No bytecode is compiled at build time: it would add
# about a minute per image on two cores and ~15 % to its size.
#
# Build one with e.g. `docker build --target api -t accident-severity-api .`
# or everything with `docker compose build`. OCI labels come from the build args
# VERSION, REVISION (the git commit) and SOURCE (the repository URL).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
# OCI labels of every image; set last in each target, so a new commit rebuilds no other layer.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/accident-severity/accident-severity

# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS uv

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_SYSTEM_CERTS=1

# The same uv version as the Makefile's UV_VERSION.
RUN pip install --no-cache-dir uv==0.13.8

WORKDIR /src
# Only what the lock needs: dependencies change far less often than code, so these
# layers stay cached across code changes.
COPY pyproject.toml uv.lock ./

# --------------------------------------------------------------------------
FROM uv AS deps-app
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-install-project --extra app

FROM uv AS deps-api
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-install-project --extra api

# The pipeline extra holds the api one: start from its virtualenv and add only the rest.
FROM deps-api AS deps-pipeline
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-install-project --extra pipeline

FROM uv AS deps-mlflow
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-install-project --extra mlflow

# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="accident-severity" \
      org.opencontainers.image.description="Accident severity scoring (BAAC): DVC pipeline, MLflow registry, FastAPI service, Streamlit dashboard" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DVC_NO_ANALYTICS=1 \
    OMP_WAIT_POLICY=PASSIVE \
    MPLBACKEND=Agg \
    HOME=/home/app \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app

# Non-root user with a fixed uid/gid so that volume permissions are predictable.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app

WORKDIR /app

# --------------------------------------------------------------------------
# MLflow server: the MLflow version pinned in uv.lock, the same the clients use (no
# client/server skew).
FROM runtime AS mlflow

COPY --from=deps-mlflow /opt/venv /opt/venv

# The server's store; a named volume mounted here is initialised from the image, ownership included.
RUN mkdir -p /mlflow/artifacts && chown -R app:app /mlflow
USER 10001:10001
ARG VERSION REVISION SOURCE
LABEL org.opencontainers.image.source="${SOURCE}" org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}"

# Job execution needs extra services (huey workers); not used here.
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false

EXPOSE 5000
VOLUME ["/mlflow"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]

# --allowed-hosts: MLflow rejects (403) Host headers other than localhost and
# private IPs; other containers reach it as `mlflow:5000`.
CMD ["mlflow", "server", \
     "--backend-store-uri", "sqlite:////mlflow/mlflow.db", \
     "--artifacts-destination", "/mlflow/artifacts", \
     "--serve-artifacts", \
     "--host", "0.0.0.0", \
     "--port", "5000", \
     "--workers", "1", \
     "--allowed-hosts", "mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*"]

# --------------------------------------------------------------------------
# The image holds the project's DVC side in /app; `dvc repro` runs in /workspace, a volume
# (the compose file's `pipeline` volume), which the entry point refreshes from /app at every
# start (docker/pipeline-workspace.sh): dvc.lock, the outputs and DVC's cache outlive the
# container, so a second run with the same image is a no-op. The volume sits on the
# workspace, never on an output (DVC deletes an output before its stage runs, and a mount
# point cannot be deleted). A named volume is initialised from the image: /workspace is the
# app user's.
FROM runtime AS pipeline

COPY --from=deps-pipeline /opt/venv /opt/venv
COPY dvc.yaml dvc.lock params.yaml ./
COPY .dvc/config .dvc/config
COPY pipeline/ pipeline/
COPY data/bundled/ data/bundled/
COPY docker/pipeline-workspace.sh /usr/local/bin/pipeline-workspace

# The image has no git metadata, so DVC is told to run without an SCM (config.local
# overrides .dvc/config).
RUN printf '[core]\n    no_scm = True\n' > .dvc/config.local \
    && mkdir -p /workspace \
    && chown app:app /workspace
WORKDIR /workspace
ENV PYTHONPATH=/workspace
VOLUME ["/workspace"]
USER 10001:10001
ARG VERSION REVISION SOURCE
LABEL org.opencontainers.image.source="${SOURCE}" org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}"

ENTRYPOINT ["pipeline-workspace"]
CMD ["dvc", "repro"]

# --------------------------------------------------------------------------
# Usage: docker run --rm -e MLFLOW_TRACKING_URI=http://HOST:5000 \
#          -v "$PWD/in:/in:ro" -v "$PWD/out:/out" IMAGE /in --output /out/a.parquet
# (/out must be writable by the user the container runs as: `--user "$(id -u):$(id -g)"`
# makes the outputs the host user's).
FROM runtime AS score

COPY --from=deps-api /opt/venv /opt/venv
COPY pipeline/ pipeline/
USER 10001:10001
ARG VERSION REVISION SOURCE
LABEL org.opencontainers.image.source="${SOURCE}" org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}"

ENTRYPOINT ["python", "-m", "pipeline.score"]
CMD ["--help"]

# --------------------------------------------------------------------------
# The dashboard talks only to the API; it shares the API's response models (api.schemas,
# which builds on pipeline.records), so those two packages come along as plain code.
FROM runtime AS app

COPY --from=deps-app /opt/venv /opt/venv
COPY pipeline/ pipeline/
COPY api/ api/
COPY app/ app/
USER 10001:10001
ARG VERSION REVISION SOURCE
LABEL org.opencontainers.image.source="${SOURCE}" org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}"

ENV STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]

CMD ["streamlit", "run", "app/streamlit_app.py", \
     "--server.port", "8501", \
     "--server.address", "0.0.0.0", \
     "--server.headless", "true"]

# --------------------------------------------------------------------------
FROM runtime AS api

COPY --from=deps-api /opt/venv /opt/venv
COPY pipeline/ pipeline/
COPY api/ api/
# The official list of communes the place search and the map use (api/places.py).
COPY data/places/ data/places/
USER 10001:10001
ARG VERSION REVISION SOURCE
LABEL org.opencontainers.image.source="${SOURCE}" org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}"

# `python -m api` applies the server limits of api/settings.py (API_LIMIT_CONCURRENCY,
# API_TIMEOUT_KEEP_ALIVE, a 16 KiB request head); it listens on API_HOST:API_PORT.
ENV API_HOST=0.0.0.0 \
    API_PORT=8000

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

CMD ["python", "-m", "api"]
