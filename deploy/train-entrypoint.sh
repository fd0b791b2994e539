#!/bin/sh
# Entry point of the training image.
#   train|evaluate|export …  → `python -m training …` as given
#   bare flags (--format spr --data /data …) → train into --run-dir (default /out/run-<UTC time>),
#   then export that run to $EXPORT_DIR (default /models), where the api picks it up on restart.
set -eu
case "${1:-}" in
  train|evaluate|export) exec python -m training "$@" ;;
  ""|-h|--help) exec python -m training --help ;;
esac
run_dir=/out/run-$(date -u +%Y%m%dT%H%M%SZ)
prev=""
for arg in "$@"; do  # the caller's --run-dir wins (argparse keeps the last one)
  [ "$prev" = --run-dir ] && run_dir=$arg
  case $arg in --run-dir=*) run_dir=${arg#--run-dir=} ;; esac
  prev=$arg
done
python -m training train --run-dir "$run_dir" "$@"
exec python -m training export --run-dir "$run_dir" --out "${EXPORT_DIR:-/models}"
