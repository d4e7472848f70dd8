"""What a project's settings are made of, as one digest that is cheap to take again.

Settings come from the .env, the process environment and a few things on disk (the `setup --local`
marker, the folders BACKUP_DATABASES names or globs, the user's templates, a credentials file).
``settings_key`` digests all of them without parsing anything: the .env and each path by what
``os.stat`` says of it (inode, size, modification and change times), the environment by the values
of every variable a setting may be read from. Two keys equal mean the same inputs, so the same
settings; any difference (even one that would not change the settings) means "load them".

The running supervisor publishes the key of the settings it runs (``checks.published_status``);
`status --json` takes the key of its own inputs and answers from what the supervisor published
only when the two are equal. The key is salted and one-way: the environment holds credentials.

This module imports only the standard library: it is on the fast path.
"""

from __future__ import annotations

import os

try:  # hashlib.blake2b itself, without hashlib loading OpenSSL first (7 ms of every `status --json`)
    from _blake2 import blake2b
except ImportError:  # a Python built without it
    from hashlib import blake2b

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: 19 ms of every `status --json`
if TYPE_CHECKING:
    from collections.abc import Mapping

# Every variable a setting, a replica kind or litestream's environment is read from starts with one
# of these, or is one of NAMES (``tests/config/test_inputs.py`` records what loading settings reads).
PREFIXES = ("BACKUP", "LITESTREAM_", "AWS_", "R2_", "GOOGLE_", "GS_", "AZURE_", "SSL_", "XDG_")
NAMES = ("HOME",)  # `~` in a path setting


def named_env_file(env_file: str | None, cwd: str) -> str | None:
    """The .env that ``envfile.find_env_file`` reads, in the two cases that need no search: the file
    named (``--env-file``/BACKUPCTL_ENV_FILE), or ``.env`` in ``cwd``; resolved as it resolves it.
    None when it is neither a regular file nor found there: ``find_env_file`` has to look."""
    if env_file is not None:
        path = os.path.expanduser(env_file)
        path = path if os.path.isabs(path) else os.path.join(cwd, path)
    else:
        path = os.path.join(cwd, ".env")
    return os.path.realpath(path) if os.path.isfile(path) else None


def identity(path: str) -> tuple[int, int, int, int, int] | None:
    """What changes when a file or folder is replaced, written, or has entries added or removed; None
    when nothing is there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def relevant_environment(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """The variables settings may be read from, sorted."""
    return sorted((k, v) for k, v in environ.items() if k.startswith(PREFIXES) or k in NAMES)


def settings_key(salt: str, version: str, env_path: str, environ: Mapping[str, str], disk: dict[str, list[str]]) -> str:
    """The digest of the settings' inputs: ``env_path`` (the resolved .env) and the environment, and
    ``disk`` (``disk_inputs`` of the settings): each of its files by identity, each of its folders by
    whether it is one, each of its globs by what it matches; ``version`` is backupctl's."""
    matches = [_matches(pattern) for pattern in disk["globs"]]
    parts = (version, env_path, identity(env_path), relevant_environment(environ),
             [(p, identity(p)) for p in disk["files"]], [(p, os.path.isdir(p)) for p in disk["folders"]], matches)  # fmt: skip
    digest = blake2b(key=salt.encode()[:64], digest_size=32)  # keyed: the salt is the key
    digest.update(repr(parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _matches(pattern: str) -> list[str]:
    """What ``glob.glob(pattern)`` finds, sorted, for a pattern with wildcards in its last part only
    (``disk_inputs`` keys no other): the folder's entries whose names match, hidden ones only when
    the pattern's name starts with a dot. Without glob's imports (1 ms of every `status --json`)."""
    folder, name = os.path.split(pattern)
    if not any(c in name for c in "*?["):
        return [pattern] if os.path.lexists(pattern) else []
    try:
        names = os.listdir(folder or os.curdir)
    except OSError:
        return []
    if not name.startswith("."):
        names = [n for n in names if not n.startswith(".")]
    if "[" in name:
        import fnmatch  # lazy: a character class needs fnmatch's rules (and re, 6 ms); `*` and `?` do not

        return sorted(os.path.join(folder, n) for n in fnmatch.filter(names, name))
    return sorted(os.path.join(folder, n) for n in names if _wildcard_match(name, n))


def _wildcard_match(pattern: str, name: str) -> bool:
    """``fnmatch.fnmatchcase(name, pattern)`` for a pattern of literal characters, ``*`` and ``?``."""
    if "?" not in pattern:
        return _star_match(pattern.split("*"), name)
    p = n = 0
    star, mark = -1, 0  # the last `*` seen, and where in ``name`` its match ends for now
    while n < len(name):
        if p < len(pattern) and pattern[p] == "*":
            star, mark, p = p, n, p + 1
        elif p < len(pattern) and (pattern[p] == "?" or pattern[p] == name[n]):
            p, n = p + 1, n + 1
        elif star >= 0:  # let the last `*` take one more character, and try again after it
            mark += 1
            p, n = star + 1, mark
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def _star_match(pieces: list[str], name: str) -> bool:
    """``_wildcard_match`` for a pattern of literal characters and ``*`` (split at each ``*``: the
    common ``*.db``): the first piece begins the name, the last ends it, the others are found in
    order between them, each as early as it can be (the earliest place leaves the most room after)."""
    if len(pieces) == 1:
        return name == pieces[0]
    first, last = pieces[0], pieces[-1]
    if len(name) < len(first) + len(last) or not name.startswith(first) or not name.endswith(last):
        return False
    at, end = len(first), len(name) - len(last)
    for piece in pieces[1:-1]:
        found = name.find(piece, at, end)
        if found < 0:
            return False
        at = found + len(piece)
    return True


def disk_inputs(settings) -> dict[str, list[str]] | None:  # noqa: ANN001 - Settings (imported by the caller; this module stays light)
    """What on disk ``settings`` were made from: ``files`` (the `setup --local` marker, every file named
    by a ``*_file``/``*_path`` setting, the templates, the pins), ``folders`` (each database's, which
    must exist) and ``globs`` (BACKUP_DATABASES's, as absolute patterns). None when a glob has a
    wildcard in a folder part (``dbs/*/app.db``): the settings' checks of such folders are not
    repeated here, so no key can stand for them."""
    import glob  # lazy: the supervisor's side only

    # lazy: the supervisor's side only; `status --json` compares keys without loading settings
    from backupctl import PACKAGE_DIR
    from backupctl.config.render import default_templates_dir, user_templates_dir
    from backupctl.config.settings import local_mode_marker

    project = str(settings.project_dir)
    if any(glob.has_magic(os.path.dirname(pattern)) for pattern in settings.globs):
        return None
    files = [str(local_mode_marker(settings.project_dir))]
    for name, value in sorted(settings.values.items()):
        if value and (name.endswith("_file") or name.endswith("_path")):
            files.append(os.path.join(project, os.path.expanduser(value)))
    for folder in (str(user_templates_dir(settings)), str(default_templates_dir())):
        files.append(folder)
        files += sorted(os.path.join(root, name) for root, dirs, names in os.walk(folder) for name in dirs + names)
    files.append(os.path.join(PACKAGE_DIR, "pins.json"))
    folders = sorted({str(db.path.parent) for db in settings.databases})
    return {"files": files, "folders": folders, "globs": list(settings.globs)}
