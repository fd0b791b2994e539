#!/usr/bin/env bash
# `make up`: api on :8000 and web page on :8080, on any Docker engine, with or without internet.
#   1. the compose tool: `docker compose` (v2 plugin) or `docker-compose` (v1, 1.28+);
#   2. the images: a quick probe pulls BASE_IMAGE; if that works, `compose build` (online);
#      if not, scripts/offline-images.sh builds api + web with no registry (~5 min the first
#      time on 2 cores, ~1 min after a code change; the train image is not needed here);
#   3. `compose up -d --no-build api web`, waits until both are healthy, prints the URLs.
# Usage: scripts/up.sh [--no-build]    (--no-build: start the images already built)
# Env: BASE_IMAGE (python:3.11-slim), PULL_PROBE_S (15: how long the pull probe may take),
#      API_PORT (8000), WEB_PORT (8080), UP_WAIT_S (180), and every docker-compose.yml knob.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
say() { echo "up: $*" >&2; }
die() { say "$*"; exit 1; }

command -v docker >/dev/null 2>&1 || die "no docker command; install Docker Engine (Debian: apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (is dockerd running? may you use its socket?)"
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  die "neither 'docker compose' (v2 plugin) nor 'docker-compose' (v1) is installed (Debian: apt-get install docker-compose)"
fi
say "using '${COMPOSE[*]}' ($("${COMPOSE[@]}" version --short 2>/dev/null || echo '?'))"

build() {
  # A pull of the base image is the cheapest honest test of "can this engine reach a registry";
  # a machine without DNS fails it at once, a filtering proxy within PULL_PROBE_S seconds.
  if timeout "${PULL_PROBE_S:-15}" docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    say "registry reachable ($BASE_IMAGE pulled): '${COMPOSE[*]} build api web'"
    "${COMPOSE[@]}" build api web
  else
    say "cannot pull $BASE_IMAGE (no registry in reach): building offline with scripts/offline-images.sh"
    say "(~5 min the first time on 2 cores: base image, wheels, api + web; ~1 min once cached)"
    OFFLINE=1 bash scripts/offline-images.sh serve web
  fi
}

if [ "${1:-}" = --no-build ]; then
  say "--no-build: starting the images already built"
else
  build
fi

"${COMPOSE[@]}" up -d --no-build api web

# Healthy = the api has loaded its model (/readyz) and the web app answers (/healthz).
deadline=$((SECONDS + ${UP_WAIT_S:-180}))
while :; do
  states=""
  for id in $("${COMPOSE[@]}" ps -q api web); do
    states+="$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id") "
  done
  case $states in
    "healthy healthy ") break ;;
    *unhealthy*|*exited*|*dead*) "${COMPOSE[@]}" logs --tail 30 api web >&2; die "a container failed: $states" ;;
  esac
  [ $SECONDS -lt $deadline ] || die "not healthy after ${UP_WAIT_S:-180} s: $states(see '${COMPOSE[*]} logs')"
  sleep 2
done

cat >&2 <<EOF
up: ready
  API       http://localhost:${API_PORT:-8000}     (docs: http://localhost:${API_PORT:-8000}/docs, works offline)
  web page  http://localhost:${WEB_PORT:-8080}
  logs: ${COMPOSE[*]} logs -f    stop: ${COMPOSE[*]} down
EOF
