"""After `setup`: which of the files backupctl writes into a git work tree git would offer to commit.

backupctl writes its state folder (`.backupctl/`: pids, logs, the private config), litestream.yml
(rendered from the .env, with this machine's absolute paths) and, for a local-folder replica, the
backups themselves. None of it belongs in the app's repository, and `git add .` would take it all.
backupctl never edits the user's .gitignore: `setup` names the lines to add, once per line and
project (remembered in the state folder), so a second `setup` stays quiet and only a new path (a
local backups folder moved into the repository) is named again.

git decides when it is installed (``git check-ignore``: every .gitignore, .git/info/exclude and the
global excludes); without git the .gitignore files on the way and .git/info/exclude are read with
the common rules. A file git already tracks was committed on purpose (Campfire commits its
config/litestream.yml) and is not named.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backupctl.owned import read_private, write_atomic
from backupctl.paths import project_state_dir

if TYPE_CHECKING:
    from backupctl.config.settings import Settings

NOTED_MARKER = "gitignore-noted"  # in the project's state folder: the lines already suggested
GIT_TIMEOUT_SECONDS = 10.0  # a local index read; longer means a stuck file system, and this is only advice


@dataclass(frozen=True)
class IgnoredPath:
    """A path backupctl writes, as it would be named in the work tree's top .gitignore."""

    path: Path
    folder: bool

    def relative(self, root: Path) -> str:
        rel = self.path.relative_to(root).as_posix()
        return rel + "/" if self.folder else rel


def work_tree(folder: Path) -> Path | None:
    """The nearest folder at or above ``folder`` holding `.git` (a folder, or the file a worktree or
    submodule has), or None when the project is in no git repository."""
    for candidate in (folder, *folder.parents):
        if os.path.lexists(candidate / ".git"):
            return candidate
    return None


def unignored(root: Path, written: list[IgnoredPath]) -> list[IgnoredPath]:
    """Those of ``written`` that git would list as new files: neither ignored nor tracked."""
    if not written:
        return []
    found = _ask_git(root, written) if shutil.which("git") else None
    if found is None:  # no git, or git refused this repository (a foreign owner's, say): read the files
        found = [w for w in written if not _ignored_by_files(root, w)]
    return found


def _ask_git(root: Path, written: list[IgnoredPath]) -> list[IgnoredPath] | None:
    """git's own answer (every ignore source it reads), or None when git cannot give one."""
    names = [w.relative(root) for w in written]  # a trailing / makes a folder pattern match before the folder exists
    try:
        tracked = _git(root, ["ls-files", "-z", "--", *names])
        ignored = _git(root, ["check-ignore", "--stdin", "-z"], "\0".join(names) + "\0")
    except (OSError, subprocess.SubprocessError):
        return None
    if tracked is None or ignored is None:
        return None
    tracked_names = {n for n in tracked.split("\0") if n}
    ignored_names = {n for n in ignored.split("\0") if n}

    def committed(name: str) -> bool:
        return any(t == name or (name.endswith("/") and t.startswith(name)) for t in tracked_names)

    return [w for w, name in zip(written, names, strict=True) if name not in ignored_names and not committed(name)]


def _git(root: Path, args: list[str], stdin: str | None = None) -> str | None:
    """A git command's output in ``root``; None when it failed (check-ignore's 1 only says "none ignored")."""
    done = subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        timeout=GIT_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode == 0 or (done.returncode == 1 and args[0] == "check-ignore"):
        return done.stdout
    return None


def _ignored_by_files(root: Path, written: IgnoredPath) -> bool:
    """Whether .git/info/exclude or a .gitignore between ``root`` and the path ignores it, by the
    usual rules: the last matching line wins, `!` re-includes, a trailing `/` wants a folder, a `/`
    elsewhere anchors the pattern to its file's folder, and a path inside an ignored folder is ignored."""
    parts = written.path.relative_to(root).parts
    sources = [(root, root / ".git" / "info" / "exclude")]
    sources += [(root.joinpath(*parts[:i]), root.joinpath(*parts[:i], ".gitignore")) for i in range(len(parts))]
    rules = [(base, line) for base, file in sources for line in _lines(file)]
    for depth in range(1, len(parts) + 1):  # a folder above first: once ignored, nothing inside comes back
        path = root.joinpath(*parts[:depth])
        folder = depth < len(parts) or written.folder
        verdict = False
        for base, line in rules:
            if path != base and base in path.parents and _matches(line, path.relative_to(base).as_posix(), folder):
                verdict = not line.startswith("!")
        if verdict:
            return True
    return False


def _lines(file: Path) -> list[str]:
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [s for s in (line.rstrip() for line in text.splitlines()) if s and not s.startswith("#")]


def _matches(line: str, rel: str, folder: bool) -> bool:
    pattern = line[1:] if line.startswith("!") else line
    if pattern.endswith("/"):
        if not folder:
            return False
        pattern = pattern.rstrip("/")
    if "/" in pattern:  # anchored to the .gitignore's folder; `**/` matches any folders, or none
        pattern = pattern.lstrip("/")
        return fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(rel, pattern.replace("**/", ""))
    return fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], pattern)


def gitignore_line(name: str) -> str:
    """``name`` (relative to the top of the work tree) as a .gitignore line that means exactly it:
    anchored with a leading `/` (which also keeps a leading `#` or `!` literal), its wildcards escaped."""
    escaped = "".join("\\" + c if c in "\\*?[" else c for c in name)
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return "/" + escaped


def new_lines(state_dir: Path, lines: list[str]) -> list[str]:
    """The ``lines`` not suggested before for this project, remembered from now on."""

    marker = state_dir / NOTED_MARKER
    noted = set((read_private(marker) or "").splitlines())
    fresh = [line for line in lines if line not in noted]
    if fresh:
        write_atomic(marker, "\n".join(sorted(noted | set(fresh))) + "\n")
    return fresh


def suggestion(settings: Settings, config: Path) -> tuple[Path, list[str]] | None:
    """The .gitignore to add to and the lines not suggested before, for what `setup` just wrote to
    ``config`` and what `start` will write; None when the project is in no git work tree."""

    root = work_tree(settings.project_dir)
    if root is None:
        return None
    written = [IgnoredPath(project_state_dir(settings.project_dir).resolve(), True), IgnoredPath(config.resolve(), False)]
    local_dir = settings.local_dir.resolve()
    # A replica folder that holds the project itself (BACKUP_LOCAL_DIR=.) is no line to add.
    if "file" in settings.replica_kinds and local_dir != settings.project_dir and local_dir not in settings.project_dir.parents:
        written.append(IgnoredPath(local_dir, True))
    inside = [w for w in written if root in w.path.parents]
    found = unignored(root, inside)
    # Backups kept inside .backupctl/ go with it: one line, not two.
    found = [w for w in found if not any(o.folder and o.path in w.path.parents for o in found)]
    lines = new_lines(written[0].path, [gitignore_line(w.relative(root)) for w in found])
    return root / ".gitignore", lines
