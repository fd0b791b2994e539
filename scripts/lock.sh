#!/usr/bin/env bash
# Regenerates the hash-pinned locks every install uses (make setup, the Dockerfiles, CI) from the
# top-level requirements/*.txt. Run it after changing a requirements file; tests/test_locks.py
# fails while a lock disagrees with its requirements. Resolution targets the images' platform:
# CPython 3.11 on x86-64 Linux (manylinux 2.36 = Debian bookworm's glibc).
# dev.lock is resolved first; each image's lock is constrained by it, so a package has one
# version everywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
compile() {
  "$UV" pip compile --quiet --generate-hashes --python-version 3.11 \
    --python-platform x86_64-manylinux_2_36 --custom-compile-command "scripts/lock.sh" \
    "$@"
}
compile requirements/dev.txt -o requirements/dev.lock
for image in serve web train pacs; do
  compile requirements/$image.txt -c requirements/dev.lock -o requirements/$image.lock
done
echo "locks written: requirements/{dev,serve,web,train,pacs}.lock"
