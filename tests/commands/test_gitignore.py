"""`setup` in a git repository names the .gitignore lines for what backupctl writes there, once,
and never edits the user's .gitignore."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import Project, run_cli

NOTE = "git would offer to commit what backupctl writes here"


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout


def named_lines(stderr: str) -> list[str]:
    """The lines the note names (indented under it), in order."""
    after = stderr.split(NOTE, 1)[1].splitlines()[1:]
    return [line.strip() for line in after if line.startswith("  /")]


def test_setup_names_the_lines_once_and_they_keep_git_status_clean(project: Project) -> None:
    outside = run_cli("setup", cwd=project.dir)
    assert outside.returncode == 0 and NOTE not in outside.stderr, outside.stderr  # no repository: nothing to say

    git(project.dir, "init", "-q")
    project.write_env(BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR="backups")
    first = run_cli("setup", cwd=project.dir)
    assert first.returncode == 0, first.stderr
    assert f"add to {project.dir / '.gitignore'} (backupctl does not edit it)" in first.stderr
    lines = named_lines(first.stderr)
    assert lines == ["/.backupctl/", "/litestream.yml", "/backups/"], first.stderr
    assert not (project.dir / ".gitignore").exists()

    again = run_cli("setup", "--local", cwd=project.dir)
    assert again.returncode == 0 and NOTE not in again.stderr, again.stderr  # said once per project
    project.write_env(BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR="backups-2")
    moved = run_cli("setup", cwd=project.dir)
    assert named_lines(moved.stderr) == ["/backups-2/"], moved.stderr  # only what is new

    # The lines are right: with them, git offers the app's files and nothing backupctl wrote.
    (project.dir / "backups-2").mkdir()
    (project.dir / "backups-2" / "x").write_text("replica\n")
    (project.dir / ".gitignore").write_text("\n".join(lines + ["/backups-2/"]) + "\n")
    untracked = git(project.dir, "status", "--porcelain", "--untracked-files=all").split("\n")
    assert sorted(u for u in untracked if u) == ["?? .env", "?? .gitignore", "?? db/app.db"], untracked


def test_ignored_and_committed_paths_are_not_named(project: Project) -> None:
    """A project in a subfolder of the repository; .backupctl/ ignored already, litestream.yml committed."""
    repo = project.dir.parent
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text(".backupctl/\n")
    printed = run_cli("setup", "--print", cwd=project.dir)
    (project.dir / "litestream.yml").write_text(printed.stdout)
    git(repo, "add", "app/litestream.yml")
    result = run_cli("setup", cwd=project.dir)
    assert result.returncode == 0, result.stderr
    # The replica folder beside the app is in the repository too: named from the top of the repository.
    assert f"add to {repo / '.gitignore'}" in result.stderr and named_lines(result.stderr) == ["/replicas/"], result.stderr


def test_without_git_the_ignore_files_are_read(project: Project, tmp_path: Path) -> None:
    """No git on PATH: .git/info/exclude and each .gitignore on the way decide, the last matching line winning."""
    repo = project.dir.parent
    (repo / ".git" / "info").mkdir(parents=True)  # a .git folder is all that says "repository"
    (repo / ".git" / "info" / "exclude").write_text("# comment\n.backupctl/\n")
    (repo / ".gitignore").write_text("*.yml\n!/app/litestream.yml\n")
    (project.dir / ".gitignore").write_text("backups/\n")
    project.write_env(BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR="backups/here")
    no_git = tmp_path / "bin-without-git"
    no_git.mkdir()
    result = run_cli("setup", cwd=project.dir, env={"PATH": str(no_git)})
    assert result.returncode == 0, result.stderr
    assert f"add to {repo / '.gitignore'}" in result.stderr
    assert named_lines(result.stderr) == ["/app/litestream.yml"], result.stderr
