"""Reproducible installs: every image (and `make setup`) installs from a hash-pinned lock, and
each lock agrees with the top-level requirements it was compiled from (scripts/lock.sh)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REQ = Path(__file__).resolve().parents[1] / "requirements"
LOCKS = ("dev", "serve", "web", "train", "pacs")
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;\\]+)")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def top_level(name: str) -> dict[str, str]:
    """name → version of every pin in requirements/<name>.txt and the files it includes."""
    pins: dict[str, str] = {}
    for raw in (REQ / f"{name}.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r"):
            pins.update(top_level(line.split(None, 1)[1].removesuffix(".txt")))
        elif line:
            match = PIN.match(line)
            assert match, f"{name}.txt: {raw!r} is not pinned as name==version"
            pins[norm(match[1])] = match[2]
    return pins


def locked(name: str) -> dict[str, str]:
    text = (REQ / f"{name}.lock").read_text()
    entries = re.split(
        r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#") else text
    )
    pins = {}
    for entry in entries:
        entry = "\n".join(x for x in entry.splitlines() if not x.lstrip().startswith("#")).strip()
        if not entry:
            continue
        match = PIN.match(entry)
        assert match, f"{name}.lock: unpinned entry {entry[:60]!r}"
        assert "--hash=sha256:" in entry, f"{name}.lock: {match[1]} has no hash"
        pins[norm(match[1])] = match[2]
    return pins


@pytest.mark.parametrize("name", LOCKS)
def test_lock_pins_every_top_level_requirement_at_its_version(name: str) -> None:
    want, got = top_level(name), locked(name)
    wrong = {k: (v, got.get(k)) for k, v in want.items() if got.get(k) != v}
    assert not wrong, (
        f"requirements/{name}.lock disagrees with {name}.txt (run scripts/lock.sh): {wrong}"
    )


@pytest.mark.parametrize("name", ("serve", "web", "train", "pacs"))
def test_image_locks_use_the_dev_versions(name: str) -> None:
    dev, image = locked("dev"), locked(name)
    assert {k: v for k, v in image.items() if dev.get(k) != v} == {}


def test_serving_lock_has_no_tensorflow() -> None:
    assert not {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx"} & set(locked("serve"))


@pytest.mark.parametrize(
    ("dockerfile", "lock"),
    [
        ("Dockerfile.serve", "serve"),
        ("Dockerfile.train", "train"),
        ("gateway_flask/Dockerfile", "web"),
        ("integrations/Dockerfile", "pacs"),
    ],
)
def test_images_install_only_from_their_lock(dockerfile: str, lock: str) -> None:
    text = (REQ.parent / dockerfile).read_text()
    assert re.findall(r"requirements/(\w+\.\w+)", text) == [f"{lock}.lock", f"{lock}.lock"]
    assert "--require-hashes" in text
