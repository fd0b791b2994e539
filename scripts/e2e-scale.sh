#!/usr/bin/env bash
# End-to-end test of scale-out (`make e2e-scale`, run by CI after `make e2e`): the compose
# profile `scale` — N api replicas behind HAProxy (deploy/lb) — under bounded load from loopback:
#   1. throughput with 1 replica, then with N (same load);
#   2. `docker kill` one replica mid-load, then start it again → no request lost or failed
#      (prints how many were retried on another replica);
#   3. rolling restart of every replica, one at a time, under load → 0 errors;
#   4. a replica whose model fails to load joins the pool (same DNS name) → it never receives
#      a request and no request fails.
# Always tears the stack down (trap). No Docker engine → says why and exits 0 (skip).
# Any failed check → exit 1.
# Env: SCALE_REPLICAS (3), LOAD_CONCURRENCY (8), LOAD_SECONDS (20), E2E_IMAGE (image to post),
#      E2E_SKIP_BUILD=1 (use the images already built), E2E_KEEP=1 (no teardown).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${SCALE_REPLICAS:-3}
CONC=${LOAD_CONCURRENCY:-8}
SECS=${LOAD_SECONDS:-20}

say() { echo "e2e-scale: $*"; }

if ! command -v docker >/dev/null 2>&1; then
  say "SKIP — no docker command on this machine"; exit 0
fi
if ! why=$(docker info --format '{{.ServerVersion}}' 2>&1); then
  say "SKIP — no Docker engine answers: $(echo "$why" | tail -1)"; exit 0
fi
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  say "SKIP — neither 'docker compose' nor 'docker-compose' is installed"; exit 0
fi
say "engine $why, $("${COMPOSE[@]}" version --short 2>/dev/null || echo compose), $N replicas"

export COMPOSE_PROJECT_NAME="cxr-scale-$$"
WORK=$(mktemp -d /tmp/cxr-scale.XXXXXX)
chmod 755 "$WORK"
BAD=$COMPOSE_PROJECT_NAME-unready

# Free loopback ports for the balancer and its stats page.
read -r LB_PORT LB_STATS_PORT < <(python3 - <<'PY'
import random, socket
def free(p):
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", p)); return True
        except OSError:
            return False
while True:
    a = random.randrange(30000, 40000, 10)
    if free(a) and free(a + 1):
        print(a, a + 1); break
PY
)
export LB_PORT LB_STATS_PORT MODELS_DIR=$ROOT/models
URL=http://127.0.0.1:$LB_PORT
STATS=http://127.0.0.1:$LB_STATS_PORT/stats

compose() { "${COMPOSE[@]}" --profile scale "$@"; }

cleanup() {
  local rc=$?
  if [ "${E2E_KEEP:-0}" = 1 ]; then say "E2E_KEEP=1: left project $COMPOSE_PROJECT_NAME up, files in $WORK"; return; fi
  docker rm -f "$BAD" >/dev/null 2>&1 || true
  compose down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

E2E_CHECK_OUT="$WORK/check.out"
# shellcheck source=scripts/e2e-lib.sh
source "$ROOT/scripts/e2e-lib.sh"

# ---- load generator and HAProxy stats reader (host python3, standard library only) ----
cat >"$WORK/load.py" <<'PY'
"""Bounded load on the balancer: `load URL IMAGE CONCURRENCY SECONDS OUT.json [STOPFILE]`
(at most SECONDS; sooner once STOPFILE exists),
or `stats STATS_URL` (servers of backend `api`: name, status, address, sessions),
or `up STATS_URL N SECONDS` (wait until N servers are UP)."""
import csv, io, json, os, sys, threading, time, urllib.error, urllib.request, uuid

def post(url, body, headers):
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
            return r.status, r.headers.get("X-Cxr-Retries", ""), r.headers.get("X-Cxr-Replica", "")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("X-Cxr-Retries", ""), e.headers.get("X-Cxr-Replica", "")
    except Exception as e:  # connection refused/reset: the balancer itself failed us
        return type(e).__name__, "", ""

def load(url, image, conc, secs, out, stopfile=""):
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + open(image, "rb").read() \
        + f"\r\n--{b}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={b}"}
    results, lock, stop = [], threading.Lock(), time.monotonic() + float(secs)
    def worker():
        while time.monotonic() < stop and not (stopfile and os.path.exists(stopfile)):
            t0 = time.monotonic()
            status, retries, replica = post(url + "/v1/predict", body, headers)
            with lock:
                results.append((status, retries, replica, time.monotonic() - t0))
    threads = [threading.Thread(target=worker) for _ in range(int(conc))]
    t0 = time.monotonic()
    for t in threads: t.start()
    for t in threads: t.join()
    wall = time.monotonic() - t0
    lat = sorted(r[3] for r in results)
    errors = {}
    for r in results:
        if r[0] != 200:
            errors[str(r[0])] = errors.get(str(r[0]), 0) + 1
    replicas = {}
    for r in results:
        replicas[r[2]] = replicas.get(r[2], 0) + 1
    summary = {
        "requests": len(results), "ok": sum(r[0] == 200 for r in results), "errors": errors,
        "retried": sum(bool(r[1]) and r[1] not in ("0", "+0") for r in results),
        "rps": round(len(results) / wall, 1), "p50_ms": round(1000 * lat[len(lat) // 2], 1),
        "p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 1), "by_replica": replicas,
    }
    json.dump(summary, open(out, "w"))
    print(json.dumps(summary))

def servers(stats_url):
    with urllib.request.urlopen(stats_url + ";csv", timeout=5) as r:
        text = r.read().decode().lstrip("# ")
    rows = [row for row in csv.DictReader(io.StringIO(text)) if row["pxname"] == "api"]
    return rows

def stats(stats_url):
    for row in servers(stats_url):
        print(json.dumps({k: row.get(k) for k in ("svname", "status", "addr", "stot", "wretr", "wredis", "hrsp_5xx")}))

def up(stats_url, n, secs):
    deadline = time.monotonic() + float(secs)
    while time.monotonic() < deadline:
        try:
            ready = [r for r in servers(stats_url) if r["svname"] != "BACKEND" and r["status"] == "UP"]
            if len(ready) >= int(n):
                print(f"{len(ready)} replicas UP in the balancer: {sorted(r['addr'] for r in ready)}")
                return
        except OSError:
            pass
        time.sleep(0.5)
    print(f"fewer than {n} replicas UP after {secs} s"); sys.exit(1)

cmd, *args = sys.argv[1:]
{"load": load, "stats": stats, "up": up}[cmd](*args)
PY
py() { python3 "$WORK/load.py" "$@"; }

pick_image() {
  if [ -n "${E2E_IMAGE:-}" ]; then echo "$E2E_IMAGE"; return; fi
  local nih
  nih=$(find "$ROOT/../shared/data/nih-cxr-1000/images" -name '*.png' 2>/dev/null | sort | head -1)
  if [ -n "$nih" ]; then echo "$nih"; return; fi
  python3 - "$WORK/generated.png" <<'PY'
import math, struct, sys, zlib
w = h = 256
rows = b"".join(b"\0" + bytes(int(200 * math.exp(-((x - 128) ** 2 / 5000 + (y - 140) ** 2 / 9000)))
                              for x in range(w)) for y in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
PY
  echo "$WORK/generated.png"
}
IMAGE=$(pick_image)

# Sum of a backend counter (retries, redispatches) from the stats page.
backend_counter() {
  py stats "$STATS" | python3 -c "import json,sys; print(sum(int(json.loads(l)['$1'] or 0) for l in sys.stdin if json.loads(l)['svname'] == 'BACKEND'))"
}

# A load summary passes when every request got a 200.
no_errors() {
  python3 - "$1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps(s))
sys.exit(0 if s["requests"] > 0 and s["ok"] == s["requests"] and not s["errors"] else 1)
PY
}

pool_ids() { compose ps -q api-pool; }

# Waits until the container's own /readyz answers 200 (asked from inside it: it has no host port).
ready_inside() {
  local deadline=$((SECONDS + 120))
  until docker exec "$1" python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=2)" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "${1:0:12} not ready after 120 s"; return 1; }
    sleep 1
  done
}

# throughput NAME REPLICAS: bounded load, every request a 200, served by REPLICAS replicas.
throughput() {
  py load "$URL" "$IMAGE" "$CONC" "$SECS" "$WORK/$1.json" >/dev/null || return 1
  python3 - "$WORK/$1.json" "$2" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps(s))
used = [k for k, v in s["by_replica"].items() if k and v > 0]
sys.exit(0 if s["ok"] == s["requests"] > 0 and len(used) == int(sys.argv[2]) else 1)
PY
}

# ---- 0. images ----
build() {
  [ "${E2E_SKIP_BUILD:-0}" = 1 ] && { echo "E2E_SKIP_BUILD=1: using the built images"; return; }
  scripts/offline-images.sh serve lb
}
check "images built offline (api, lb)" build
require

# ---- 1. one replica, then N: throughput under the same bounded load ----
start_one() {
  compose up -d --scale api-pool=1 lb && py up "$STATS" 1 180
}
check "profile scale up: 1 replica healthy behind the balancer" start_one
require
lb_hardening() {
  local id out
  id=$(compose ps -q lb)
  out=$(docker inspect -f '{{.Config.User}} ro={{.HostConfig.ReadonlyRootfs}} caps={{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}}' "$id")
  echo "lb: $out"
  [[ "$out" == "10001:10001 ro=true caps=[ALL] [no-new-privileges:true]" ]]
}
check "lb hardening: uid 10001, read-only root, no capabilities" lb_hardening
check "throughput, 1 replica (c=$CONC, ${SECS} s)" throughput one 1
scale_up() { compose up -d --no-recreate --scale api-pool="$N" lb && py up "$STATS" "$N" 180; }
check "scale to $N replicas: all UP in the balancer" scale_up
require
check "throughput, $N replicas (c=$CONC, ${SECS} s): every replica served" throughput many "$N"

# ---- 2. kill one replica under load, then start it again ----
kill_test() {
  local victim retr0 redis0 retr1 redis1
  victim=$(pool_ids | head -1)
  retr0=$(backend_counter wretr) redis0=$(backend_counter wredis)
  py load "$URL" "$IMAGE" "$CONC" "$SECS" "$WORK/kill.json" >/dev/null &
  local loader=$!
  sleep $((SECS / 4))
  echo "docker kill ${victim:0:12}"; docker kill "$victim" >/dev/null
  sleep $((SECS / 4))
  echo "docker start ${victim:0:12}"; docker start "$victim" >/dev/null
  wait "$loader"
  retr1=$(backend_counter wretr) redis1=$(backend_counter wredis)
  py up "$STATS" "$N" 120
  echo "balancer: $((retr1 - retr0)) retries, $((redis1 - redis0)) redispatched to another replica" \
    | tee "$WORK/kill-balancer.txt"
  no_errors "$WORK/kill.json"
}
check "docker kill + start one replica under load: no request failed" kill_test

# ---- 3. rolling restart, one replica at a time ----
rolling() {
  # load for the whole rolling restart (at most 300 s), stopped once the last replica is back
  rm -f "$WORK/rolling.stop"
  py load "$URL" "$IMAGE" "$CONC" 300 "$WORK/rolling.json" "$WORK/rolling.stop" >/dev/null &
  local loader=$! id
  for id in $(pool_ids); do
    echo "docker restart ${id:0:12}"
    docker restart -t 40 "$id" >/dev/null || { touch "$WORK/rolling.stop"; return 1; }
    # one at a time: the next restart waits until this replica is ready and back in the pool
    ready_inside "$id" || { touch "$WORK/rolling.stop"; return 1; }
    py up "$STATS" "$N" 120 || { touch "$WORK/rolling.stop"; return 1; }
  done
  sleep 2
  touch "$WORK/rolling.stop"
  wait "$loader"
  no_errors "$WORK/rolling.json"
}
check "rolling restart of all $N replicas under load: 0 errors" rolling

# ---- 4. a replica whose model fails to load never gets traffic ----
unready() {
  local net bad_models ip
  bad_models=$WORK/bad-models
  mkdir -p "$bad_models" && cp "$ROOT/models/model.json" "$bad_models/"
  head -c 4096 "$ROOT/models/model.onnx" >"$bad_models/model.onnx"  # truncated: sha256 mismatch
  chmod -R a+rX "$bad_models"
  net=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "$(pool_ids | head -1)")
  docker run -d --name "$BAD" --network "$net" --network-alias api-pool --read-only \
    --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges:true --restart always \
    -v "$bad_models:/app/models:ro" "cxr-age-sex-api:${IMAGE_TAG:-latest}" >/dev/null
  ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$BAD")
  # wait until the balancer has discovered it (its address appears among the servers)
  local deadline=$((SECONDS + 30))
  until py stats "$STATS" | grep -q "\"$ip:8000\""; do
    [ $SECONDS -lt $deadline ] || { echo "balancer never discovered $ip"; py stats "$STATS"; return 1; }
    sleep 1
  done
  # the balancer slot it got (kept even if a crash-loop restart drops its DNS record for a while)
  local slot
  slot=$(py stats "$STATS" | python3 -c "import json,sys; print(next(json.loads(l)['svname'] for l in sys.stdin if json.loads(l)['addr'] == '$ip:8000'))")
  py load "$URL" "$IMAGE" "$CONC" "$SECS" "$WORK/unready.json" >/dev/null
  echo "unready replica at $ip (slot $slot): $(py stats "$STATS" | grep "\"$slot\"")"
  # it tried to load its model and refused (crash-looping since: restart always); on a busy
  # machine the first attempt may come after the load above
  local logs deadline=$((SECONDS + 90))
  logs=$(docker logs "$BAD" 2>&1)
  until grep -qi "refusing to start" <<<"$logs"; do
    [ $SECONDS -lt $deadline ] || { echo "the bad replica did not refuse its model"; return 1; }
    sleep 2; logs=$(docker logs "$BAD" 2>&1)
  done
  grep -i "refusing to start" <<<"$logs" | head -1 | cut -c1-200
  echo "after the log check: $(py stats "$STATS" | grep "\"$slot\"")"
  py stats "$STATS" | python3 -c "
import json, sys
rows = [json.loads(l) for l in sys.stdin]
bad = [r for r in rows if r['svname'] == '$slot']
# HAProxy 2.6 (bookworm) starts a newly discovered server UP until its first check fails (no
# init-state before 3.1): connections it gets in that moment are refused and redispatched to a
# ready replica. So: never UP, and every session it got was redispatched (clients saw none).
sys.exit(0 if bad and all(r['status'] != 'UP' and int(r['stot'] or 0) == int(r['wredis'] or 0)
                          for r in bad) else 1)" \
    || { echo "the unready replica's slot $slot is UP or answered a session itself"; return 1; }
  no_errors "$WORK/unready.json"
}
check "replica whose model fails to load: never UP, anything it got redispatched, no request failed" unready

say "throughput 1 replica: $(python3 -c "import json; s=json.load(open('$WORK/one.json')); print(s['rps'], 'req/s, p50', s['p50_ms'], 'ms, p99', s['p99_ms'], 'ms')" 2>/dev/null)"
say "throughput $N replicas: $(python3 -c "import json; s=json.load(open('$WORK/many.json')); print(s['rps'], 'req/s, p50', s['p50_ms'], 'ms, p99', s['p99_ms'], 'ms')" 2>/dev/null)"
say "kill test: $(python3 -c "import json; s=json.load(open('$WORK/kill.json')); print(s['requests'], 'requests,', s['requests'] - s['ok'], 'failed,', s['retried'], 'answered after a retry')" 2>/dev/null); $(cat "$WORK/kill-balancer.txt" 2>/dev/null)"
say "rolling restart: $(python3 -c "import json; s=json.load(open('$WORK/rolling.json')); print(s['requests'], 'requests,', s['requests'] - s['ok'], 'failed,', s['retried'], 'answered after a retry')" 2>/dev/null)"
summary
