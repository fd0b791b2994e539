#!/usr/bin/env bash
# End-to-end test of the compose stack (`make e2e`, run by CI after `make test`):
# builds the images offline, starts api + web, predicts through both, checks metrics, logs and
# container hardening, restarts and re-creates the api (same host port), runs the train profile
# on phantom data, serves the model it exported, turns API keys on (docker-compose.prod.yml) —
# then always tears it all down.
# No Docker engine → says why and exits 0 (skip). Any failed check → exit 1.
# Env: E2E_MODELS_DIR (model the api serves; default models/, the demo model), E2E_IMAGE (a PNG/JPEG/DICOM to post; default: a NIH sample from ../shared, else a
#      generated PNG), E2E_SKIP_BUILD=1 (use the images already built), E2E_KEEP=1 (no teardown).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { echo "e2e: $*"; }
exec 3>&1  # the terminal: long steps show their progress there while `check` captures the rest

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
say "engine $why, $("${COMPOSE[@]}" version --short 2>/dev/null || echo compose)"

# A project of our own: nothing here touches another stack on this machine.
export COMPOSE_PROJECT_NAME="cxr-e2e-$$"
WORK=$(mktemp -d /tmp/cxr-e2e.XXXXXX)
chmod 755 "$WORK"
LOGS=$WORK/logs
mkdir -p "$LOGS" "$WORK/runs" "$WORK/models"
# The train job writes as TRAIN_UID: our own uid, unless that is root (then the image's user).
if [ "$(id -u)" = 0 ]; then
  export TRAIN_UID=10001 TRAIN_GID=10001
  chmod 777 "$WORK/runs" "$WORK/models"
else
  export TRAIN_UID=$(id -u) TRAIN_GID=$(id -g)
fi

# The stack's own ports, 8000 (api) and 8080 (web), when both are free; else two free ones.
read -r API_PORT WEB_PORT < <(python3 - <<'PY'
import random, socket
def free(p):
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", p)); return True
        except OSError:
            return False
a, w = 8000, 8080
while not (free(a) and free(w)):
    a = random.randrange(20000, 30000, 10); w = a + 1
print(a, w)
PY
)
export API_PORT WEB_PORT
export MODELS_DIR=${E2E_MODELS_DIR:-$ROOT/models} GATEWAY_SECRET_KEY=e2e-$RANDOM-$RANDOM-secret-key

compose() { "${COMPOSE[@]}" "$@"; }
compose_prod() { "${COMPOSE[@]}" -f docker-compose.yml -f docker-compose.prod.yml "$@"; }

cleanup() {
  local rc=$?
  if [ "${E2E_KEEP:-0}" = 1 ]; then say "E2E_KEEP=1: left project $COMPOSE_PROJECT_NAME up, files in $WORK"; return; fi
  compose --profile train --profile monitoring logs --no-color >"$LOGS/compose-final.log" 2>&1 || true
  compose --profile train --profile monitoring down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

E2E_CHECK_OUT="$LOGS/check.out"
# shellcheck source=scripts/e2e-lib.sh
source "$ROOT/scripts/e2e-lib.sh"

# ---- helpers (HTTP and JSON with the host's python3 standard library only) ----
cat >"$WORK/e2e_http.py" <<'PY'
"""Tiny HTTP client for the e2e checks: exit status 0 = the check passed."""
import hashlib, json, sys, urllib.error, urllib.request, uuid

def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()

def multipart(field, filename, data):
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={b}"}

def auth(key):
    return {"Authorization": f"Bearer {key}"} if key else {}

def fail(msg):
    print(msg); sys.exit(1)

def predict(url, image, filename, key="", expect="200"):
    body, headers = multipart("file", filename, open(image, "rb").read())
    status, _, out = request("POST", url, body, {**headers, **auth(key)})
    if str(status) != expect:
        fail(f"POST {url}: status {status}, expected {expect}: {out[:300]!r}")
    if status != 200:
        print(f"status {status} as expected: {out[:120].decode(errors='replace')}"); return
    p = json.loads(out)
    if not (isinstance(p.get("age_years"), (int, float)) and 0 <= p["age_years"] <= 130):
        fail(f"bad age_years in {p}")
    if p.get("sex") not in ("male", "female") or not 0 <= p.get("p_male", -1) <= 1:
        fail(f"bad sex/p_male in {p}")
    if (p["p_male"] >= 0.5) != (p["sex"] == "male"):
        fail(f"sex {p['sex']!r} disagrees with p_male {p['p_male']}")
    print(f"age {p['age_years']:.1f} y, {p['sex']} (p_male {p['p_male']:.2f}), model {p.get('model')}")

def status(method, url, expect, key="", body="", ctype="application/octet-stream"):
    code, _, out = request(method, url, body.encode() or None, {"Content-Type": ctype, **auth(key)})
    if str(code) != expect:
        fail(f"{method} {url}: status {code}, expected {expect}: {out[:300]!r}")
    print(f"{method} {url} → {code} {out[:100].decode(errors='replace')!r}")

def metrics(url, must, save_to):
    code, headers, out = request("GET", url)
    text = out.decode()
    if code != 200:
        fail(f"GET {url}: {code}")
    missing = [m for m in must.split(",") if m not in text]
    if missing:
        fail(f"/metrics lacks {missing}")
    ok = [l for l in text.splitlines() if l.startswith("cxr_requests_total") and 'status="200"' in l
          and "predict" in l]
    if not ok or not any(float(l.rsplit(" ", 1)[1]) >= 1 for l in ok):
        fail("no successful predict counted in cxr_requests_total")
    open(save_to, "w").write(text)
    print(f"{len(text.splitlines())} lines; {ok[0]}")

def card_sha(url, model_file):
    code, _, out = request("GET", url)
    card = json.loads(out) if code == 200 else fail(f"GET {url}: {code} {out[:200]!r}")
    want = hashlib.sha256(open(model_file, "rb").read()).hexdigest()
    if card.get("sha256") != want:
        fail(f"api serves sha256 {card.get('sha256')}, trained model is {want}")
    print(f"api serves the trained model {card.get('name')} {card.get('version')} ({want[:12]}…)")

def form(web, image):
    # the browser's path: the page sets a session cookie and embeds its CSRF token in the form
    import http.cookiejar, re
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(web + "/", timeout=30).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if not token:
        fail("no csrf_token field in the upload page")
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token.group(1)}\r\n"
            f"--{b}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"xray.png\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + open(image, "rb").read() \
        + f"\r\n--{b}--\r\n".encode()
    req = urllib.request.Request(web + "/predict", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    html = opener.open(req, timeout=60).read().decode()
    ages = re.findall(r'class="age(?:-value)?">\s*([^<]*\d[^<]*)<', html)
    if not ages:
        fail(f"no estimated age in the results page: {html[:400]!r}")
    print(f"results page shows estimated age {ages[0].strip()!r}")

cmd, *args = sys.argv[1:]
{"predict": predict, "status": status, "metrics": metrics, "card_sha": card_sha, "form": form}[cmd](*args)
PY
http() { python3 "$WORK/e2e_http.py" "$@"; }

# A real image to post: a radiograph from the shared NIH sample, else a synthetic chest
# radiograph from training/phantom.py (with the project's venv), else a plain generated PNG.
pick_image() {
  if [ -n "${E2E_IMAGE:-}" ]; then echo "$E2E_IMAGE"; return; fi
  local nih
  nih=$(find "$ROOT/../shared/data/nih-cxr-1000/images" -name '*.png' 2>/dev/null | sort | head -1)
  if [ -n "$nih" ]; then echo "$nih"; return; fi
  if [ -x "$ROOT/.venv/bin/python" ] && "$ROOT/.venv/bin/python" -c "
import sys
from training.phantom import generate_phantom, phantom_png
open(sys.argv[1], 'wb').write(phantom_png(generate_phantom(seed=7, size=256)))
" "$WORK/phantom.png" 2>/dev/null; then
    echo "$WORK/phantom.png"; return
  fi
  python3 - "$WORK/generated.png" <<'PY'
import math, struct, sys, zlib
w = h = 256  # a smooth grey "chest" blob: enough for the full decode → predict path
rows = b"".join(b"\0" + bytes(int(200 * math.exp(-((x - 128) ** 2 / 5000 + (y - 140) ** 2 / 9000)))
                              for x in range(w)) for y in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
PY
  echo "$WORK/generated.png"
}

# Waits until every container of the given services reports healthy (image HEALTHCHECKs).
wait_healthy() {
  local start=$SECONDS deadline=$((SECONDS + ${WAIT_S:-180})) ids id st all
  while [ $SECONDS -lt $deadline ]; do
    ids=$(compose ps -q "$@")
    all=1
    for id in $ids; do
      # a crash-looping container (restart policy) counts as failed at once, not after the timeout
      st=$(docker inspect -f '{{if gt .RestartCount 0}}restarted{{else if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")
      case $st in
        healthy) ;;
        unhealthy|exited|dead|restarted) echo "container $(docker inspect -f '{{.Name}}' "$id") $st"
                                         docker logs --tail 40 "$id" 2>&1; return 1 ;;
        *) all=0 ;;
      esac
    done
    if [ -n "$ids" ] && [ $all = 1 ]; then echo "$(echo "$ids" | wc -w) containers healthy after $((SECONDS - start)) s"; return 0; fi
    sleep 2
  done
  echo "not healthy within ${WAIT_S:-180}s:"; compose ps; return 1
}

# Non-root user, read-only root filesystem, all capabilities dropped, no new privileges.
check_hardening() {
  local id user ro caps sec name bad=0
  for id in $(compose ps -q "$@"); do
    name=$(docker inspect -f '{{.Name}}' "$id")
    user=$(docker inspect -f '{{.Config.User}}' "$id")
    ro=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$id")
    caps=$(docker inspect -f '{{json .HostConfig.CapDrop}}' "$id")
    sec=$(docker inspect -f '{{json .HostConfig.SecurityOpt}}' "$id")
    echo "$name user=$user read_only=$ro cap_drop=$caps security_opt=$sec"
    case ${user%%:*} in ""|0|root) echo "  runs as root"; bad=1 ;; esac
    [ "$ro" = true ] || { echo "  root filesystem is writable"; bad=1; }
    [[ $caps == *'"ALL"'* ]] || { echo "  capabilities not dropped"; bad=1; }
    [[ $sec == *no-new-privileges* ]] || { echo "  no-new-privileges missing"; bad=1; }
    # the process really runs as that uid: read it from the kernel
    docker exec "$id" python -c "import os,sys; sys.exit(os.getuid() == 0)" || { echo "  uid 0 inside"; bad=1; }
  done
  return $bad
}

host_port() { compose port --index="${2:-1}" "$1" "${3:-8000}" | sed 's/.*://'; }

if [ ! -f "$MODELS_DIR/model.onnx" ] || [ ! -f "$MODELS_DIR/model.json" ]; then
  say "FAIL — no model to serve: $MODELS_DIR/model.onnx + model.json missing (make demo-model)"
  exit 1
fi
IMAGE=$(pick_image)
SECRET_NAME="e2e-$RANDOM-do-not-log-me.png"  # stands in for a patient's name in a file name
say "project $COMPOSE_PROJECT_NAME, ports api $API_PORT web $WEB_PORT, image $(basename "$IMAGE")"

# ---- 1. images, built offline ----
build() {
  [ "${E2E_SKIP_BUILD:-0}" = 1 ] && { echo "E2E_SKIP_BUILD=1: using existing images"; return 0; }
  # its stage and progress lines (every 20 s) go to the terminal too: a first build takes minutes
  bash scripts/offline-images.sh serve web train 2>&1 | tee >(sed -u 's/^/        /' >&3)
}
check "offline build of api, web and train images" build
require

# ---- 2. the default stack ----
check "compose up -d (api, web)" compose up -d --no-build
check "api and web healthy" wait_healthy api web
require
API=http://127.0.0.1:$(host_port api)
WEB=http://127.0.0.1:$WEB_PORT

check "hardening of api and web (docker inspect)" check_hardening api web
check "api /v1/predict with a real image" http predict "$API/v1/predict" "$IMAGE" "$SECRET_NAME"
check "api refuses a text file named .png with 415" \
  http status POST "$API/v1/predict" 415 "" "this is not an image" image/png
check "api /v1/models serves the demo model card" http status GET "$API/v1/models" 200
check "api /docs loads Swagger UI from the api itself (no CDN)" \
  http status GET "$API/docs-assets/swagger-ui-bundle.js" 200
check "web page / answers" http status GET "$WEB/" 200
check "web JSON proxy /api/predict → api" http predict "$WEB/api/predict" "$IMAGE" "$SECRET_NAME"
check "web form upload with the page's CSRF token → results page" http form "$WEB" "$IMAGE"
check "web form post without CSRF token is refused" \
  http status POST "$WEB/predict" 400 "" "x" application/x-www-form-urlencoded
check "api /metrics counts the predictions" \
  http metrics "$API/metrics" "cxr_requests_total,cxr_batch_size,cxr_request_duration_seconds" "$LOGS/metrics.prom"
if command -v promtool >/dev/null 2>&1; then
  check "promtool lints /metrics" bash -c "curl -fsS '$API/metrics' | promtool check metrics"
  check "promtool checks deploy/prometheus.yml" promtool check config deploy/prometheus.yml
fi
no_name_in_logs() {
  compose logs --no-color >"$LOGS/stack.log" 2>&1 || return 1
  if grep -F "$SECRET_NAME" "$LOGS/stack.log"; then return 1; fi
  echo "$(wc -l <"$LOGS/stack.log") log lines, none with the uploaded file's name"
}
check "no client file name in the logs" no_name_in_logs

# ---- 2b. the api keeps its host port when restarted and when re-created ----
same_port() {
  local p
  p=$(host_port api) || return 1
  [ "$p" = "$API_PORT" ] || { echo "api published on :$p, expected :$API_PORT"; return 1; }
  http status GET "http://127.0.0.1:$API_PORT/readyz" 200
}
check "compose restart api" compose restart api
check "api healthy after restart" wait_healthy api
check "api still on :$API_PORT after restart" same_port
check "compose up --force-recreate api (a new container)" \
  compose up -d --no-build --force-recreate api
check "api healthy after re-creation" wait_healthy api
check "api still on :$API_PORT after re-creation" same_port
check "web predicts through the re-created api" http predict "$WEB/api/predict" "$IMAGE" x.png
require

# ---- 3. the train profile: a tiny phantom run, exported to ONNX + card ----
train_smoke() {
  # bare flags: the image's entry point trains into --run-dir, then exports to /models
  MODELS_DIR=$WORK/models RUNS_DIR=$WORK/runs compose --profile train run --rm -T train \
    --format phantom --n 64 --epochs 1 --image-size 64 --batch-size 16 --run-dir /out/smoke \
    && [ -f "$WORK/runs/smoke/config.json" ] \
    && MODELS_DIR=$WORK/models RUNS_DIR=$WORK/runs compose --profile train run --rm -T \
      --entrypoint python train -c "
import hashlib, json, onnx
m = onnx.load('/models/model.onnx'); onnx.checker.check_model(m)
card = json.load(open('/models/model.json'))
assert card['sha256'] == hashlib.sha256(open('/models/model.onnx', 'rb').read()).hexdigest(), 'sha256'
assert card['input']['shape'] == [None, 64, 64, 1], card['input']
names = {o.name for o in m.graph.output}
assert {'age', 'p_male'} <= names, names
print('valid ONNX, outputs', sorted(names), 'card', card['name'], card['version'])
"
}
check "train profile: phantom run → valid ONNX + model card" train_smoke

# ---- 4. the api serves what train exported (restart with that models dir) ----
if [ -f "$WORK/models/model.onnx" ]; then
  check "api restarted on the trained model" env MODELS_DIR="$WORK/models" "${COMPOSE[@]}" up -d --no-build api
  check "api healthy on the trained model" wait_healthy api
  check "api still on :$API_PORT" same_port
  check "api /v1/models is the trained model" http card_sha "$API/v1/models" "$WORK/models/model.onnx"
  check "api predicts with the trained model" http predict "$API/v1/predict" "$IMAGE" x.png
fi

# ---- 5. production override: API keys on ----
export API_KEYS="e2e-key-$RANDOM$RANDOM,second-key-$RANDOM$RANDOM"
export GATEWAY_API_KEY=${API_KEYS%%,*}
check "prod override up (API_KEYS set)" compose_prod up -d --no-build
check "api and web healthy with keys on" wait_healthy api web
check "api on :$API_PORT under the prod override" same_port
check "api without a key → 401" http predict "$API/v1/predict" "$IMAGE" x.png "" 401
check "api with a wrong key → 401" http predict "$API/v1/predict" "$IMAGE" x.png wrong-key 401
check "api with a key → 200" http predict "$API/v1/predict" "$IMAGE" x.png "${API_KEYS##*,}"
check "readiness stays open without a key" http status GET "$API/readyz" 200
check "web (holding a key) predicts through the locked api" http predict "$WEB/api/predict" "$IMAGE" x.png
check "hardening under the prod override" check_hardening api web

summary
