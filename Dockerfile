# syntax=docker/dockerfile:1
#
# One Dockerfile, several images (pick one with `--target`):
#
#   builder   builds wheels of the project and of every dependency (no compiler
#             is needed: all pinned dependencies ship manylinux wheels)
#   runtime   shared base: the wheels installed, a non-root user, the code and
#             the bundled data; not meant to be run by itself
#   mlflow    MLflow tracking server + model registry (port 5000)
#   pipeline  `dvc repro`: trains, evaluates and registers the model
#   score     batch scoring: `python -m pipeline.score INPUT... --output OUT`
#   app       Streamlit dashboard (port 8501)
#   api       FastAPI service (port 8000), the default (last) target
#
# Build one with e.g. `docker build --target api -t accident-severity-api .`
# or everything with `docker compose build`.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Only what `pip wheel .` reads: the build metadata and the three packages.
COPY pyproject.toml README.md ./
COPY pipeline/ pipeline/
COPY api/ api/
COPY app/ app/

RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DVC_NO_ANALYTICS=1 \
    OMP_WAIT_POLICY=PASSIVE \
    MPLBACKEND=Agg \
    HOME=/home/app \
    PYTHONPATH=/app

# Non-root user with a fixed uid/gid so that volume permissions are predictable.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app

# The wheels are bind-mounted from the builder stage, so they never become a
# layer of the final image; --no-index guarantees nothing else is downloaded.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl

WORKDIR /app

# Code and configuration: owned by root, read-only for the app user.
COPY dvc.yaml params.yaml ./
COPY .dvc/config .dvc/config
COPY pipeline/ pipeline/
COPY api/ api/
COPY app/ app/
COPY data/bundled/ data/bundled/

# Writable places for the app user: /app (dvc.lock, sqlite mlflow.db), DVC's
# state (.dvc/tmp, .dvc/cache), the pipeline outputs (data/, models/) and the
# MLflow server's store (/mlflow). Named volumes mounted on these paths are
# initialised from the image, ownership included.
# The image has no git metadata, so DVC is told to run without an SCM
# (config.local overrides .dvc/config).
RUN printf '[core]\n    no_scm = True\n' > .dvc/config.local \
    && mkdir -p models /mlflow/artifacts \
    && chown app:app /app /app/.dvc /app/data /app/models \
    && chown -R app:app /mlflow

USER 10001:10001

# --------------------------------------------------------------------------
# MLflow server: built from `runtime` rather than the official MLflow image so
# that server and clients run the exact MLflow version pinned in pyproject.toml
# (one version to upgrade, no client/server skew), at the cost of a larger image.
FROM runtime AS mlflow

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
FROM runtime AS pipeline

CMD ["dvc", "repro"]

# --------------------------------------------------------------------------
# Usage: docker run --rm -e MLFLOW_TRACKING_URI=http://HOST:5000 \
#          -v "$PWD/in:/in:ro" -v "$PWD/out:/out" IMAGE /in/a.csv --output /out/a.parquet
# (/out must be writable by uid 10001).
FROM runtime AS score

ENTRYPOINT ["python", "-m", "pipeline.score"]
CMD ["--help"]

# --------------------------------------------------------------------------
FROM runtime AS app

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

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
