# The serving image: opsbook-serve on ONNX Runtime, without torch or fastai.
#   docker build -f docker/api.Dockerfile --build-arg BUNDLE=runs/<run>/bundle -t opsbook-api .
# Targets: `api` (the default, the last stage) serves and checks drift (/monitoring/drift, opsbook-drift);
# `serve` (--target serve) only serves, in about a third of the size.
# Build arguments: BASE, any image with python3 >= 3.11 and its venv module; BUNDLE, a bundle folder inside the
# build context copied to /bundle (without it, mount one at /bundle at run time).
# Run it with an API key, from a secret file (it refuses to start on 0.0.0.0 without one; OPSBOOK_NO_AUTH=1 serves
# every endpoint without a key, on purpose):
#   docker run -d -p 8000:8000 -v "$PWD/api_key:/run/secrets/api_key:ro" -e OPSBOOK_API_KEY_FILE=/run/secrets/api_key \
#       -v opsbook-requests:/var/lib/opsbook opsbook-api
# pip reaches its index through the builder's own settings when given as build secrets, never stored in a layer:
#   --secret id=pip.conf,src=<a pip.conf> [--secret id=ca.crt,src=<CA bundle it names as /run/secrets/ca.crt>]
ARG BASE=python:3.11-slim

FROM ${BASE} AS build-serve
WORKDIR /src
COPY docker/api-requirements.txt docker/
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf --mount=type=secret,id=ca.crt \
    python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r docker/api-requirements.txt
COPY pyproject.toml README.md ./
COPY opsbook opsbook
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf --mount=type=secret,id=ca.crt \
    /opt/venv/bin/pip install --no-cache-dir --no-deps .

FROM build-serve AS build-api
COPY docker/drift-requirements.txt docker/
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf --mount=type=secret,id=ca.crt \
    /opt/venv/bin/pip install --no-cache-dir -r docker/drift-requirements.txt

# The bundle, owned by root and read-only for everyone (files 0444, folders 0555): the service's user cannot change
# the model it serves. Made in a stage of its own, so that the final image holds one copy of it.
FROM ${BASE} AS bundle
ARG BUNDLE=docker/no-bundle
COPY ${BUNDLE} /out/bundle
RUN chown -R root:root /out/bundle && chmod -R a=rX /out/bundle

FROM ${BASE} AS runtime
RUN groupadd --system --gid 10001 opsbook \
    && useradd --system --uid 10001 --gid opsbook --no-create-home --shell /usr/sbin/nologin opsbook \
    && mkdir -p /var/lib/opsbook && chown opsbook:opsbook /var/lib/opsbook
COPY --from=bundle /out/ /
COPY docker/api-entrypoint.sh /usr/local/bin/opsbook-api
# XDG_CACHE_HOME: ONNX Runtime keeps a telemetry id in the cache folder, and the user has no home
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    PORT=8000 \
    OPSBOOK_BUNDLE=/bundle \
    OPSBOOK_LOG_DB=/var/lib/opsbook/requests.db
VOLUME ["/var/lib/opsbook"]
WORKDIR /var/lib/opsbook
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['PORT']}/readyz\", timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["opsbook-api"]

FROM runtime AS serve
COPY --from=build-serve /opt/venv /opt/venv

FROM runtime AS api
COPY --from=build-api /opt/venv /opt/venv
