#!/usr/bin/env bash
# Deploy with docker compose on this host, or on a VM where the repository is checked out, then wait for the API
# to be healthy (its HEALTHCHECK on /readyz):
#   docker/deploy/compose-deploy.sh              # the API, Prometheus and Grafana
#   docker/deploy/compose-deploy.sh api          # the API alone
# Environment: OPSBOOK_IMAGE, the API image, built or loaded beforehand (default opsbook-api); OPSBOOK_PORT (8000);
# OPSBOOK_API_KEY_FILE, the API key's file (default docker/api_key, made with a random key when missing);
# COMPOSE_PROJECT_NAME (opsbook). Stop with: docker compose -f docker/compose.yaml -p opsbook down
set -euo pipefail
cd "$(dirname "$0")/../.."
export OPSBOOK_IMAGE=${OPSBOOK_IMAGE:-opsbook-api} COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-opsbook}
docker image inspect "$OPSBOOK_IMAGE" >/dev/null 2>&1 \
    || { echo "no image $OPSBOOK_IMAGE: build it (docker build -f docker/api.Dockerfile --build-arg BUNDLE=runs/<run>/bundle -t $OPSBOOK_IMAGE .) or docker load it"; exit 1; }
key=${OPSBOOK_API_KEY_FILE:-docker/api_key}
[ -s "$key" ] || openssl rand -hex 16 >"$key"
chmod 0444 "$key"   # read inside the containers by their own users; keep the folder holding it private
OPSBOOK_API_KEY_FILE=$(realpath "$key")
export OPSBOOK_API_KEY_FILE
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
"${compose[@]}" -f docker/compose.yaml up -d --no-build "$@"
cid=$("${compose[@]}" -f docker/compose.yaml ps -q api)
for _ in $(seq 90); do
    case $(docker inspect --format '{{.State.Health.Status}}' "$cid") in
        healthy) echo "opsbook is ready on port ${OPSBOOK_PORT:-8000}; its API key is in $key"; exit 0 ;;
        unhealthy) break ;;
    esac
    sleep 1
done
docker logs --tail 50 "$cid"
echo "the API did not become healthy: its log is above"
exit 1
