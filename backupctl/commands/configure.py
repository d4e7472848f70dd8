"""`setup`: render litestream.yml from the settings, prove the pinned litestream reads it, write it.

:func:`setup` runs the whole command: the fast checks (``preflight.py``), a litestream.yml
backupctl did not write refused or kept as a copy, the optional check with the real binary
(:func:`check_config`, before anything is written, so a failed check leaves the file as it
was), the atomic write, and the local-mode marker. Notes go to ``note`` as they happen; the
result says what was written and what litestream will replicate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backupctl.checks import preflight
from backupctl.config.render import Rendered, guard_foreign_config, record_stamp, render, written_by_backupctl
from backupctl.config.settings import Settings, local_mode_marker
from backupctl.errors import LitestreamError
from backupctl.litestream.binary import ensure_binary
from backupctl.litestream.listings import configured_databases
from backupctl.litestream.runner import Litestream
from backupctl.owned import secure_dir, write_atomic

# `litestream databases` only parses the config and prints it; if it takes longer than this,
# something is wrong with the binary or the machine, not with the network.
CHECK_TIMEOUT_SECONDS = 30.0

Note = Callable[[str], None]


@dataclass(frozen=True)
class ConfigCheck:
    """A config the pinned litestream reads as backupctl meant: ``label`` names what was checked."""

    version: str
    label: str


@dataclass(frozen=True)
class Setup:
    rendered: Rendered
    target: Path | None  # None with --print: nothing written
    check: ConfigCheck | None


def setup(
    settings: Settings,
    *,
    output: Path | None,
    print_only: bool,
    local: bool,
    check: bool,
    force: bool,
    skip_checks: bool,
    note: Note,
) -> Setup:
    """Render the config; unless ``print_only``, write it to ``output`` (default: beside the .env)."""

    rendered = render(settings)
    target = None
    if not print_only:
        target = (output or settings.config_path).expanduser().absolute()
        if not skip_checks:
            # Before writing: a database that is not SQLite fails here, in a second, not after minutes of start.
            preflight.run(settings, missing_database="note", unreachable_is_error=False, note=note)
        _keep_a_foreign_config(settings, target, force, note)
    # Check exactly the rendered text before anything is written: a failed check leaves an existing
    # litestream.yml byte-identical (and --print is never judged by an older file on disk).
    checked = check_config(settings, None, text=rendered.text, note=note) if check else None
    if target is not None:
        write_atomic(target, rendered.text)
        if target == settings.config_path:
            record_stamp(settings, target, rendered.text)
        set_local_mode(settings, local, note)
    return Setup(rendered, target, checked)


def _keep_a_foreign_config(settings: Settings, target: Path, force: bool, note: Note) -> None:
    """A litestream.yml backupctl did not write is refused, or with --force kept as a copy first."""
    import shutil
    import time


    try:
        current = target.read_bytes()
    except FileNotFoundError:
        return
    if not force:
        guard_foreign_config(settings, target, current)
        return
    if not written_by_backupctl(settings, target, current):
        kept = target.with_name(f"{target.name}.bak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        shutil.copy2(target, kept)
        note(f"kept your previous {target.name} as {kept}")


def set_local_mode(settings: Settings, local: bool, note: Note) -> None:
    """`setup --local` marks the project as using its local folder; a plain `setup` removes the mark."""

    marker = local_mode_marker(settings.project_dir)
    if local:
        secure_dir(marker.parent, what="state folder")
        write_atomic(marker, "set by `backupctl setup --local`; removed by a plain `backupctl setup`\n")
        note("local mode: start, status and restore use the local folder until you run `backupctl setup` again")
    elif marker.exists():
        marker.unlink()
        note("left local mode: the .env's replica is used again")


def check_config(
    settings: Settings, config_path: Path | None, *, text: str | None = None, note: Note | None = None
) -> ConfigCheck:
    """Validate a config with the pinned litestream; raise LitestreamError if it reads it otherwise.

    ``text`` (what `setup --print` printed) is written to a temporary file and checked, whatever
    is on disk; else ``config_path``, else the project's litestream.yml (rendered to a temporary
    file if there is none). ``litestream databases`` parses the file exactly as `start` would. Every configured
    database must be listed with as many replicas as configured: a config shape the pinned
    version silently ignores (``replica:`` under 0.3) shows up here as a missing replica.
    """
    import tempfile


    note = note or (lambda _message: None)
    binary = ensure_binary(settings.version, notify=note)
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
    for line in runner.environment.notices:
        note(line)
    return ConfigCheck(settings.version, label)
