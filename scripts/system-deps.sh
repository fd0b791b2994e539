#!/usr/bin/env bash
# Installs the Debian packages the test suite and the offline image build use for real, when
# missing and when we can.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v kubectl >/dev/null 2>&1 || need+=(kubectl)  # tests/deploy compares its kustomize output
# scripts/offline-images.sh builds its base image with debootstrap when none can be pulled.
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
# PACS tests (tests/integrations): Orthanc + its Python plugin, dcmtk's storescu/echoscu.
[ -x /usr/sbin/Orthanc ] || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancPython.so ] || need+=(orthanc-python)
command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${need[*]}; install them (Debian: apt-get install ${need[*]}); tests needing them will skip" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
