# syntax=docker/dockerfile:1.7
# One image for every `evpipe` command (gateway, archiver, loader, worker, topics, replay, query):
# the Kubernetes manifests pick the subcommand with `args`.
#
# Two stages: the build stage compiles wheels into a virtualenv (with a compiler available);
# the runtime stage copies only that virtualenv onto the slim base, so no build tools,
# pip caches or sources ship. The base is pinned to an exact patch release; CI (Renovate or
# `docker buildx imagetools inspect`) should add the @sha256 digest for reproducible builds.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/evpipe
WORKDIR /src
# Dependencies first: this layer is reused while only the code changes.
COPY pyproject.toml README.md ./
RUN mkdir -p evpipe && touch evpipe/__init__.py \
    && /opt/evpipe/bin/pip install . \
    && /opt/evpipe/bin/pip uninstall -y evpipe
COPY evpipe ./evpipe
COPY gateway ./gateway
COPY consumers ./consumers
COPY schemas ./schemas
COPY bench ./bench
RUN /opt/evpipe/bin/pip install --no-deps . \
    && /opt/evpipe/bin/python -m compileall -q /opt/evpipe

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="evpipe" \
      org.opencontainers.image.description="Event-ingestion pipeline: gateway, archiver, loader, worker" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
ARG APP_UID=10001
RUN groupadd --system --gid ${APP_UID} evpipe \
    && useradd --system --uid ${APP_UID} --gid evpipe --home-dir /var/lib/evpipe --shell /usr/sbin/nologin evpipe \
    && mkdir -p /var/lib/evpipe \
    && chown evpipe:evpipe /var/lib/evpipe
COPY --from=build /opt/evpipe /opt/evpipe
ENV PATH=/opt/evpipe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EVPIPE_STATE_DIR=/var/lib/evpipe \
    GATEWAY_HOST=0.0.0.0
WORKDIR /var/lib/evpipe
USER 10001:10001
# 8080: gateway HTTP (API, /healthz, /readyz, /metrics); 9100: consumers' and workers' /metrics.
EXPOSE 8080 9100
ENTRYPOINT ["evpipe"]
CMD ["--help"]
