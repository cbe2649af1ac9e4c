# The application image: the project installed on python:3.11-slim, run as a non-root user.
# Its default command serves the latest Bento (the prediction API) on port 3000; the compose
# stack (docker-compose.yml) also runs the one-shot training job, the Prefect deployments
# and the Evidently UI from this same image. docs/deploy.md explains the design.
#
# Keep in step with bentofile.yaml's `docker:` section (same Python, no system packages,
# same environment): tests/test_compose.py checks that they agree.
FROM python:3.11-slim

# MLOPS_REQUIRE_MONGODB=1: in a container, a missing MONGODB_URI is an error, never a silent
# fall-back to the embedded store (whose files would vanish with the container).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BENTOML_DO_NOT_TRACK=true \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    MPLBACKEND=Agg \
    MLOPS_REQUIRE_MONGODB=1 \
    BENTOML_HOME=/data/bentoml \
    MLOPS_ARTIFACTS=/data/artifacts \
    MLOPS_STORE_DIR=/data/store

WORKDIR /app

# No apt-get: the wheels of xgboost and scikit-learn ship their own OpenMP runtime (libgomp),
# and nothing else needs a system package.

# The dependencies first, exactly the locked ones (requirements/image.txt, exported from
# uv.lock by `make lock`: every version pinned, every download checked against its hash), so
# that a change to the code does not reinstall them and every build installs the same packages.
COPY requirements/image.txt requirements/
RUN pip install --require-hashes -r requirements/image.txt

# Then the project itself (.dockerignore keeps out tests, runs, stores and caches). Editable,
# as `make install` does: the code finds data/*.yaml and bentofile.yaml next to its packages.
COPY . .
RUN pip install --no-deps -e .

# A non-root user owns only /data: the named volumes mounted there (models and Bentos, run
# folders and the Evidently workspace, the prediction-log journal) start as copies of these
# folders, so they belong to this user too. The code in /app stays read-only for it.
# Numeric in USER, so that a host can verify it is not root (Kubernetes' runAsNonRoot).
RUN groupadd --gid 10001 mlops \
    && useradd --uid 10001 --gid 10001 --create-home --shell /bin/sh mlops \
    && mkdir -p /data/bentoml /data/artifacts/monitoring/workspace /data/store \
    && chown -R mlops:mlops /data
USER 10001:10001

EXPOSE 3000
# BentoML's readiness probe: 200 once every service process has loaded its model.
# (python, since the slim image has no curl.)
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=4)"]

# The latest Bento in BENTOML_HOME: the one `mlops run` (or a promotion) built last.
CMD ["bentoml", "serve", "tabular-mlops:latest", "--host", "0.0.0.0", "--port", "3000"]
