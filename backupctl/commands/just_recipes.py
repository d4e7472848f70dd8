"""`backupctl justfile`: the chora `just backup-*` recipes as a file the app imports (backup.just).

Copying backupctl's own justfile into an app brings its development recipes (`default: test lint`,
`bench`, `pins`, `demo`) and collides with the app's; `just --justfile` runs in the wrong folder.
So the app gets ``templates/justfile/backup.just.j2`` rendered: only ``backup-*`` recipes, each
running ``backupctl`` from PATH in the folder of backup.just (beside the app's .env), and one
``import 'backup.just'`` line in its own justfile.

The file is the app's source (committed with it): written atomically, readable like any file an
editor makes, and never replaced when it differs unless ``force`` (a copy is kept).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from backupctl.config.render import default_templates_dir
from backupctl.errors import ConfigError, RefusedError
from backupctl.owned import write_atomic

BACKUP_JUST = "backup.just"
TEMPLATE_DIR = "justfile"
TEMPLATE = "backup.just.j2"
# `[continue]` (1.54): just ends quietly after a Ctrl-C when the recipe's command exited 0. An older
# just rejects the unknown attribute, and with it the whole justfile importing backup.just.
CONTINUE_SINCE = (1, 54, 0)
# `[positional-arguments]` as a recipe attribute (1.29; source_directory() is 1.27): the floor.
NEEDS = (1, 29, 0)
# Where a recipe runs: the folder of backup.just, as just sees it when it runs (the file moves with
# the app's checkout; no path is baked in).
HERE = "{{ quote(source_directory()) }}"

Version = tuple[int, int, int]


def installed_just() -> Version | None:
    """The version of the `just` on PATH, or None when there is none (or it does not say)."""
    found = shutil.which("just")
    if found is None:
        return None
    try:
        done = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_just_version(done.stdout)


def parse_just_version(text: str) -> Version | None:
    """`just 1.59.0` -> (1, 59, 0)."""
    match = re.search(r"\bjust (\d+)\.(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def shown_version(version: Version | None) -> str:
    return ".".join(map(str, version)) if version else "unknown"


def render_backup_just(just_version: Version | None) -> str:
    """backup.just's text. ``just_version``: the just that will read it; None (not installed yet)
    is taken as a current one."""
    import jinja2


    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(default_templates_dir() / TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # No backupctl version in it: an upgrade that changes no recipe leaves the app's file as it is.
    context = {
        "here": HERE,  # a just expression, printed as it is: Jinja does not render its own output again
        "continue_attr": just_version is None or just_version >= CONTINUE_SINCE,
        "just_version": shown_version(just_version),
    }
    try:
        return env.get_template(TEMPLATE).render(context)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"template {TEMPLATE_DIR}/{TEMPLATE}: {exc}", "reinstall backupctl") from None


def app_justfile(folder: Path) -> Path | None:
    """The justfile `just` finds from ``folder``: the nearest one in it or above (any case of
    `justfile`, or `.justfile`)."""
    for candidate_dir in (folder, *folder.parents):
        try:
            names = sorted(os.listdir(candidate_dir))
        except OSError:
            continue
        for name in names:
            if (name.lower() == "justfile" or name == ".justfile") and (candidate_dir / name).is_file():
                return candidate_dir / name
    return None


def import_line(backup_just: Path, justfile: Path | None) -> str:
    """The line that imports backup.just from ``justfile`` (relative to it, as just reads imports)."""
    where = Path(os.path.relpath(backup_just, justfile.parent)) if justfile is not None else Path(backup_just.name)
    text = where.as_posix()
    if "'" not in text:
        return f"import '{text}'"
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'import "{escaped}"'


def imports_it(justfile: Path, line: str) -> bool:
    """Does ``justfile`` already hold that import (``import?`` too)?"""
    try:
        text = justfile.read_text("utf-8", errors="replace")
    except OSError:
        return False
    target = line.removeprefix("import ")
    return re.search(rf"^[ \t]*import\??[ \t]+{re.escape(target)}[ \t]*(#.*)?$", text, re.M) is not None


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    action: str  # "created", "unchanged" or "replaced"
    kept: Path | None = None  # the copy of the file replaced with --force


def write_backup_just(path: Path, text: str, *, force: bool) -> WrittenFile:
    """Write backup.just at ``path``; a different file already there is refused unless ``force``,
    which keeps it beside as ``backup.just.bak-<UTC time>`` first."""

    try:
        current: bytes | None = path.read_bytes()
    except FileNotFoundError:
        current = None
    if current == text.encode("utf-8"):
        return WrittenFile(path, "unchanged")
    kept = None
    if current is not None:
        if not force:
            raise RefusedError(
                f"{path} already exists and differs from what this backupctl writes; refusing to replace it",
                f"compare with `backupctl justfile | diff {path} -`, then pass --force to replace it (a copy is kept)",
            )
        kept = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        shutil.copy2(path, kept)
    write_atomic(path, text, mode=_source_file_mode())
    return WrittenFile(path, "created" if current is None else "replaced", kept)


def _source_file_mode() -> int:
    """The mode an editor would give a new file here (0666 less the umask): backup.just is the app's
    source, shared with its team through the repository, not one of backupctl's private state files."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
