# syntax=docker/dockerfile:1
# The ingestd image. Built by compose (compose/compose.yaml) from the repository root:
#   docker build -f compose/ingestd.Dockerfile -t ingestd:0.1.0 .
# Multi-arch (the base image is published for linux/amd64 and linux/arm64, and every dependency
# has wheels for both, so nothing is compiled):
#   docker buildx build --platform linux/amd64,linux/arm64 -f compose/ingestd.Dockerfile .
# Config: mount it at /etc/ingestd/ingest.toml. Secrets: environment variables named by its
# *_env keys. State (spool, dead letters): /var/lib/ingestd, a volume.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ingestd ./ingestd
# a venv, so the final stage copies one directory and no build tooling
RUN python -m venv /opt/ingestd \
 && /opt/ingestd/bin/pip install . \
 && /opt/ingestd/bin/pip uninstall --yes pip setuptools wheel

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 ingestd \
 && useradd --system --uid 10001 --gid ingestd --home-dir /var/lib/ingestd \
      --shell /usr/sbin/nologin ingestd \
 && install -d -o ingestd -g ingestd -m 0750 /var/lib/ingestd /etc/ingestd
COPY --from=build /opt/ingestd /opt/ingestd
ENV PATH=/opt/ingestd/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER ingestd:ingestd
WORKDIR /var/lib/ingestd
VOLUME ["/var/lib/ingestd"]
# /metrics, /healthz, /readyz (http.port in the config; the health check assumes 9108)
EXPOSE 9108
# /healthz answers while the process and its event loop run; python, since slim has no curl
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=3)"]
ENTRYPOINT ["python", "-m", "ingestd"]
CMD ["--config", "/etc/ingestd/ingest.toml"]
