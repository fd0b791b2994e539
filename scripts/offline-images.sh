#!/usr/bin/env bash
# Builds every image with no registry in reach (air-gapped / offline build):
#   1. a base image: BASE_IMAGE if present or pullable, else one built from Debian packages
#      (debootstrap + docker import), reused once it exists;
#   2. a host wheelhouse (.wheelhouse/<image>/) of CPython 3.11 manylinux x86-64 wheels for the
#      pinned requirements, reused while the requirements files are unchanged;
#      (for `lb`, the load balancer of the compose `scale` profile: Debian .debs, apt-get download);
#   3. `docker build` of each image with pip pointed at the wheelhouse (--no-index --find-links),
#      so nothing inside a build container needs the network.
# Usage: scripts/offline-images.sh [serve|web|train|lb|pacs ...]   (default: serve web train;
#        pacs = Orthanc + listener, docker-compose profile `pacs`, needs the Debian mirror)
#        scripts/offline-images.sh base | wheels   (only the base image | only the wheelhouse,
#        e.g. on a machine with internet, then carry .wheelhouse/ across the air gap)
# Env: BASE_IMAGE (python:3.11-slim), LOCAL_BASE (cxr-base:bookworm), IMAGE_TAG (latest),
#      WHEELHOUSE (.wheelhouse), DEBIAN_MIRROR (default: the mirror apt uses on this host),
#      OFFLINE=1 (do not even try to pull BASE_IMAGE), NO_CACHE=1 (rebuild every layer),
#      PROGRESS_S (seconds between progress lines, 20).
# Time: ~10-15 min the first time on a 2-core machine for all three (base ~1 min, wheels ~3 min,
# mostly TensorFlow, images ~8-10 min; api + web alone ~5 min); ~1-2 min when only code changed. It prints a line per stage
# and a progress line every PROGRESS_S seconds, each with the elapsed time.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
LOCAL_BASE=${LOCAL_BASE:-cxr-base:bookworm}
IMAGE_TAG=${IMAGE_TAG:-latest}
WHEELHOUSE=${WHEELHOUSE:-.wheelhouse}
PYTHON=${PYTHON:-python3}
SUITE=bookworm  # its python3 is 3.11, the version every wheel is downloaded for

PROGRESS_S=${PROGRESS_S:-20}

# Every line carries the time since the start, so a long stage is visibly alive.
log() { printf 'offline-images: [%d:%02d] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }

# progress PID COMMAND…: while PID runs, logs the COMMAND's one-line status every PROGRESS_S s.
progress() {
  local pid=$1 next=$((SECONDS + PROGRESS_S)); shift
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ $SECONDS -ge $next ]; then log "  … $("$@" 2>/dev/null)"; next=$((SECONDS + PROGRESS_S)); fi
  done
}

# "N wheels, M MB" in a wheelhouse folder.
wheel_count() {
  local n mb
  n=$(find "$1" -maxdepth 1 -name '*.whl' 2>/dev/null | wc -l)
  mb=$(du -sm "$1" 2>/dev/null | cut -f1)
  echo "$n wheels, ${mb:-0} MB"
}

# image name per target; docker-compose.yml names the same tags
declare -A IMAGE=([serve]=cxr-age-sex-api [web]=cxr-age-sex-web [train]=cxr-age-sex-train)
declare -A DOCKERFILE=([serve]=Dockerfile.serve [web]=gateway_flask/Dockerfile [train]=Dockerfile.train)
# The compose `scale` profile's load balancer (HAProxy); built only when asked for.
IMAGE[lb]=cxr-age-sex-lb
DOCKERFILE[lb]=deploy/lb/Dockerfile
# Debian packages the lb image unpacks: HAProxy and the libraries a bookworm base lacks.
LB_DEBS=(haproxy liblua5.3-0 libopentracing-c-wrapper0 libopentracing1)
# The compose `pacs` profile's Orthanc + listener; built only when asked for. It installs Orthanc
# with apt inside the build, so its build reaches the Debian mirror (the others reach nothing).
IMAGE[pacs]=cxr-age-sex-pacs
DOCKERFILE[pacs]=integrations/Dockerfile
declare -A NETWORK=([pacs]=default)

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# The first Debian mirror apt is configured with (deb822 .sources or one-line sources.list).
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ {print $2; exit}' "$f")
    if [ -n "$uri" ] && grep -q "^Suites:.*\b$SUITE\b" "$f" && [[ "$uri" != *security* ]]; then
      echo "$uri"; return
    fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk -v s="$SUITE" '$1 == "deb" && $3 == s {print $2; exit}' "$f")
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  return 1
}

# A Debian bookworm root filesystem with python3 + venv, imported as LOCAL_BASE.
build_local_base() {
  command -v debootstrap >/dev/null || { log "debootstrap missing (make system-deps, or apt-get install debootstrap)"; exit 1; }
  [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }
  local mirror root
  mirror=$(debian_mirror) || { log "no Debian mirror found in apt sources; set DEBIAN_MIRROR"; exit 1; }
  root=$(mktemp -d /var/tmp/cxr-base.XXXXXX)
  # shellcheck disable=SC2064  # expand $root now: the trap outlives the local
  trap "rm -rf '$root'" EXIT
  log "building $LOCAL_BASE with debootstrap ($SUITE) from $mirror — ~1-3 min, once"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$root" "$mirror" >"$root.log" 2>&1 &
  local pid=$!
  progress $pid tail -1 "$root.log"
  wait $pid || { tail -20 "$root.log" >&2; rm -f "$root.log"; log "debootstrap FAILED"; exit 1; }
  rm -f "$root.log"
  # Smaller image: package caches, docs and locales are not needed at run time.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/var/log/*.log
  tar -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' - "$LOCAL_BASE" >/dev/null
  rm -rf "$root"
  trap - EXIT
  log "built $LOCAL_BASE"
}

# Prints the base image to build on.
resolve_base() {
  if have_image "$BASE_IMAGE"; then log "base image: $BASE_IMAGE (present)"; echo "$BASE_IMAGE"; return; fi
  if [ "${OFFLINE:-0}" != 1 ]; then
    log "trying to pull $BASE_IMAGE (at most ${PULL_TIMEOUT_S:-120} s)"
    if timeout "${PULL_TIMEOUT_S:-120}" docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
      log "base image: $BASE_IMAGE (pulled)"; echo "$BASE_IMAGE"; return
    fi
    log "cannot pull $BASE_IMAGE: using the local Debian base $LOCAL_BASE instead"
  fi
  have_image "$LOCAL_BASE" || build_local_base
  log "base image: $LOCAL_BASE"
  echo "$LOCAL_BASE"
}

# Downloads the lb image's .debs (the host's apt sources, bookworm) unless already there.
fill_debs() {
  local dir=$WHEELHOUSE/lb stamp digest
  command -v apt-get >/dev/null || { log "apt-get missing: put the ${LB_DEBS[*]} .debs in $dir"; exit 1; }
  digest=$(apt-cache policy "${LB_DEBS[@]}" | grep -E '^[a-z]|Candidate' | sha256sum | cut -d' ' -f1)
  stamp=$dir/.debs.sha256
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    log "debs in $dir are current"; return
  fi
  log "downloading ${LB_DEBS[*]} into $dir"
  rm -rf "$dir" && mkdir -p "$dir"
  # apt's sandbox user must be able to write there
  chmod 777 "$dir"
  (cd "$dir" && apt-get download -q "${LB_DEBS[@]}" >/dev/null 2>&1) \
    || { log "apt-get download ${LB_DEBS[*]} failed (apt-get update?)"; exit 1; }
  chmod 755 "$dir"
  echo "$digest" >"$stamp"
}

# Downloads the target's wheels unless the wheelhouse already matches its requirements.
fill_wheelhouse() {
  local target=$1 dir=$WHEELHOUSE/$1 stamp digest
  if [ "$target" = lb ]; then fill_debs; return; fi
  digest=$(sha256sum "requirements/$target.lock" | cut -d' ' -f1)
  stamp=$dir/.requirements.sha256
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
    log "wheelhouse $dir is current ($(wheel_count "$dir"))"; return
  fi
  log "downloading wheels for $target into $dir (train: ~430 MB, a few minutes)"
  mkdir -p "$dir"
  local platforms=() v
  # manylinux_2_17 (= manylinux2014) … 2_36: every glibc up to bookworm's 2.36
  for v in $(seq 17 36); do platforms+=(--platform "manylinux_2_${v}_x86_64"); done
  "$PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: \
    "${platforms[@]}" --platform manylinux2014_x86_64 \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    -d "$dir" --require-hashes -r "requirements/$target.lock" &
  local pid=$!
  progress $pid wheel_count "$dir"
  wait $pid || { log "pip download FAILED for $target"; exit 1; }
  echo "$digest" >"$stamp"
  log "wheelhouse $dir ready ($(wheel_count "$dir"))"
}

# The build context of each image: only what its Dockerfile copies (plus its wheels).
declare -A CONTEXT=(
  [serve]="Dockerfile.serve requirements cxr service models"
  [web]="gateway_flask requirements cxr"
  [train]="Dockerfile.train requirements cxr training deploy/train-entrypoint.sh"
  [pacs]="integrations requirements"
)
CONTEXT[lb]="deploy/lb"

# Streams the image's small context as a tar: the wheelhouse appears in it as .ctx-wheels/.
context_tar() {
  local target=$1 wheels
  wheels=$(cd "$WHEELHOUSE/$target" && pwd)
  # shellcheck disable=SC2086  # the context list is word-split on purpose
  tar -cf - --exclude=__pycache__ --exclude='*.pyc' ${CONTEXT[$target]} \
    -C "$wheels" --transform 's,^\.\(/\|$\),.ctx-wheels\1,' .
}

build_image() {
  local target=$1 base=$2 tag=${IMAGE[$1]}:$IMAGE_TAG out deps buildlog pid t0=$SECONDS
  log "building $tag from ${DOCKERFILE[$target]} on $base"
  # The classic builder (no BuildKit/buildx needed) with a context streamed on stdin: only this
  # image's files, and its wheels, which the Dockerfile COPYs into the `deps` stage alone.
  # --network none: proof that nothing in the build reaches for the network.
  buildlog=$(mktemp "${TMPDIR:-/tmp}/cxr-build-$target.XXXXXX")
  (context_tar "$target" | DOCKER_BUILDKIT=0 docker build \
      --network "${NETWORK[$target]:-none}" --force-rm ${NO_CACHE:+--no-cache} -f "${DOCKERFILE[$target]}" -t "$tag" \
      --build-arg "BASE_IMAGE=$base" \
      --build-arg "WHEELHOUSE=.ctx-wheels" \
      --build-arg "PIP_ARGS=--no-index --find-links /tmp/wheels" \
      -) >"$buildlog" 2>&1 &
  pid=$!
  # the Dockerfile step the build is at, e.g. "serve: Step 7/19 : RUN python3 -m venv …"
  progress $pid bash -c "grep '^Step ' '$buildlog' | tail -1 | cut -c1-100 | sed 's/^/$target: /'"
  if ! wait $pid; then
    tail -40 "$buildlog" >&2
    rm -f "$buildlog"
    log "FAILED to build $tag"
    exit 1
  fi
  out=$(cat "$buildlog"); rm -f "$buildlog"
  # Tag the last layer of the `deps` stage (the step before `FROM … AS final`), so that the
  # installed venv stays the layer cache and is never pruned as dangling.
  deps=$(echo "$out" | awk '/^Step [0-9]+\/[0-9]+ : FROM .* AS final/ {print id; exit}
                            /^ ---> [0-9a-f]+$/ {id = $2}')
  [ -n "$deps" ] && docker tag "$deps" "${IMAGE[$target]}:deps-cache"
  log "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1e6}'), $((SECONDS - t0)) s)"
}

main() {
  local targets=("$@") base t
  # One build at a time on this engine: two runs would race for the same tags and caches.
  exec 9>"${TMPDIR:-/tmp}/cxr-offline-images.lock"
  if ! flock -n 9; then
    log "another offline-images.sh run holds the lock; waiting for it to finish"
    flock 9
    log "lock free after $SECONDS s; the clock restarts"
    SECONDS=0
  fi
  [ ${#targets[@]} -gt 0 ] || targets=(serve web train)
  case "${targets[*]}" in
    base) resolve_base; return ;;
    wheels) for t in serve web train; do fill_wheelhouse "$t"; done; return ;;
  esac
  for t in "${targets[@]}"; do
    [ -n "${IMAGE[$t]:-}" ] || { log "unknown image '$t' (serve, web, train, lb, pacs)"; exit 2; }
  done
  log "building ${targets[*]}: the first time ~10-15 min on 2 cores with train, ~5 min without;" \
    "~1-2 min when only code changed"
  log "stage 1/3: base image"
  base=$(resolve_base)
  log "stage 2/3: wheelhouse ($WHEELHOUSE)"
  for t in "${targets[@]}"; do fill_wheelhouse "$t"; done
  log "stage 3/3: images (docker build --network none)"
  for t in "${targets[@]}"; do build_image "$t" "$base"; done
  # Images these tags replaced are now dangling: drop ours (the caches are tagged, so kept).
  docker image prune -f --filter "label=org.opencontainers.image.vendor=cxr-age-sex" >/dev/null || true
  log "done: ${targets[*]} built in $((SECONDS / 60)) min $((SECONDS % 60)) s"
}

main "$@"
