#!/bin/sh
# opsbook-serve on every interface; options of opsbook-serve may follow the image name. It refuses to start without
# an API key: OPSBOOK_API_KEY_FILE names a file holding it (a compose, Docker or Kubernetes secret), or OPSBOOK_API_KEY
# holds it; OPSBOOK_NO_AUTH=1 serves without one, on purpose. Workers: one per CPU of the container's quota
# (OPSBOOK_WORKERS to choose), each with the CPUs left over as ONNX Runtime threads.
set -eu
exec opsbook-serve --bundle "$OPSBOOK_BUNDLE" --log-db "$OPSBOOK_LOG_DB" --host 0.0.0.0 --port "$PORT" \
    --workers "${OPSBOOK_WORKERS:-0}" "$@"
