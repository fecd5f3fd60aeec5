#!/usr/bin/env bash
# Container test (`make docker-test`): validate the compose file for every profile, build the
# service image, start it with docker compose, wait for its health check, drive every route
# from the host, check that it runs as non-root, serve a mounted model directory; build the
# Ray Serve image and serve from it with no network but loopback (Ray probes cloud metadata
# when it starts), then stop it with SIGTERM; tear down.
# Any failure exits non-zero, after printing the container logs.
#
# Overrides: VAE_DOCKER_TEST_PORT (host port, default: a free one), VAE_DOCKER_TEST_PROJECT
# (compose project name), PYTHON (host interpreter for the stdlib-only client, default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PROJECT=${VAE_DOCKER_TEST_PROJECT:-vae-docker-test}
PORT=${VAE_DOCKER_TEST_PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
API_KEY="docker-test-$RANDOM$RANDOM"
MOUNTED=vae-docker-test-mounted-$$
RAY=vae-docker-test-ray-$$
IMAGE=vae-service:latest

# Settings reach the container from the environment, as users set them.
export VAE_BIND=127.0.0.1 VAE_PUBLISH_PORT=$PORT VAE_API_KEY=$API_KEY VAE_WORKERS=2
compose=(docker compose --project-name "$PROJECT" --file docker-compose.yml)

log() { printf '== %s\n' "$*"; }

teardown() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "docker-test FAILED (exit $rc); container logs follow" >&2
        "${compose[@]}" ps --all >&2 || true
        "${compose[@]}" logs --no-color --tail 200 >&2 || true
        docker logs --tail 100 "$MOUNTED" 2>&1 | sed 's/^/mounted | /' >&2 || true
    fi
    if [[ $rc -ne 0 ]]; then docker logs --tail 50 "$RAY" 2>&1 | sed 's/^/ray | /' >&2 || true; fi
    docker rm --force "$MOUNTED" "$RAY" >/dev/null 2>&1 || true
    "${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true
    exit "$rc"
}
trap teardown EXIT

log "docker compose config (default, train and gpu profiles)"
"${compose[@]}" config --quiet
"${compose[@]}" --profile train config --quiet
"${compose[@]}" --profile gpu config --quiet

log "build the service image"
"${compose[@]}" build vae
docker image ls "$IMAGE"

log "docker compose up --wait (port $PORT)"
"${compose[@]}" up --detach --wait --wait-timeout 180 vae
health=$(docker inspect --format '{{.State.Health.Status}}' "$("${compose[@]}" ps --quiet vae)")
[[ $health == healthy ]] || { echo "health status is '$health', expected 'healthy'" >&2; exit 1; }

log "the container runs as non-root"
uid=$("${compose[@]}" exec -T vae id -u | tr -d '[:space:]')
echo "uid=$uid"
[[ $uid =~ ^[0-9]+$ && $uid -ne 0 ]] || { echo "container runs as uid '$uid'" >&2; exit 1; }
"${compose[@]}" exec -T vae python -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") is not None)' \
    || { echo "torch is installed in the service image" >&2; exit 1; }

log "drive every route on 127.0.0.1:$PORT"
"$PYTHON" scripts/container_smoke.py --url "http://127.0.0.1:$PORT" --api-key "$API_KEY"

log "serve a mounted model directory (VAE_MODEL_DIR)"
docker run --detach --name "$MOUNTED" --publish "127.0.0.1::8000" \
    --volume "$PWD/models/mnist-vae:/models/custom:ro" --env VAE_MODEL_DIR=/models/custom \
    --env VAE_WORKERS=1 "$IMAGE" >/dev/null
mounted_port=$(docker port "$MOUNTED" 8000/tcp | head -n 1 | sed 's/.*://')
for _ in $(seq 1 60); do
    status=$(docker inspect --format '{{.State.Health.Status}}' "$MOUNTED")
    [[ $status == healthy || $status == unhealthy ]] && break
    sleep 2
done
[[ $status == healthy ]] || { echo "mounted-model container is '$status'" >&2; exit 1; }
# Logs captured first: `grep -q` closing the pipe early would fail the pipeline under pipefail.
mounted_logs=$(docker logs "$MOUNTED" 2>&1)
grep -q 'loaded model .* from /models/custom' <<<"$mounted_logs" \
    || { echo "the service did not load /models/custom" >&2; exit 1; }
"$PYTHON" - "$mounted_port" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/model", timeout=10) as resp:
    manifest = json.load(resp)["manifest"]
print(f"ok  /models/custom served: {manifest['name']} {manifest['version']}")
EOF

log "the Ray Serve image (--target service-ray): serve, answer, stop on SIGTERM"
docker build --quiet --target service-ray --tag vae-service-ray:latest . >/dev/null
docker run --detach --name "$RAY" --network none --shm-size 512m vae-service-ray:latest >/dev/null
for _ in $(seq 1 90); do
    ray_logs=$(docker logs "$RAY" 2>&1)
    grep -q '^serving on ' <<<"$ray_logs" && break
    [[ $(docker inspect --format '{{.State.Running}}' "$RAY") == true ]] || break
    sleep 2
done
docker exec "$RAY" python - <<'EOF'
import json, urllib.request
base = "http://127.0.0.1:8000"
with urllib.request.urlopen(base + "/readyz", timeout=10) as resp:
    assert resp.status == 200, resp.status
request = urllib.request.Request(
    base + "/sample", data=b'{"n": 2, "seed": 0}', headers={"Content-Type": "application/json"}
)
with urllib.request.urlopen(request, timeout=30) as resp:
    assert len(json.load(resp)["images"]) == 2
print("ok  Ray Serve image: /readyz and /sample")
EOF
docker stop --time 60 "$RAY" >/dev/null
ray_exit=$(docker inspect --format '{{.State.ExitCode}}' "$RAY")
[[ $ray_exit == 0 ]] || { echo "the Ray Serve container exited $ray_exit after SIGTERM" >&2; exit 1; }
echo "ok  stopped with exit 0"

log "docker-test passed"
