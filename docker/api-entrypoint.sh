#!/bin/sh
# opsbook-serve on every interface, one worker per core (OPSBOOK_WORKERS to change); options of opsbook-serve may follow
# the image name. OPSBOOK_API_KEY_FILE names a file holding the API key (a compose or Cloud Run secret).
set -eu
if [ -n "${OPSBOOK_API_KEY_FILE:-}" ]; then
    OPSBOOK_API_KEY=$(cat "$OPSBOOK_API_KEY_FILE")
    export OPSBOOK_API_KEY
fi
exec opsbook-serve --bundle "$OPSBOOK_BUNDLE" --log-db "$OPSBOOK_LOG_DB" --host 0.0.0.0 --port "$PORT" \
    --workers "${OPSBOOK_WORKERS:-$(nproc)}" "$@"
