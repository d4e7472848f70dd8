"""Settings from `.env` and the process environment, validated all at once.

Reading the `.env` (no interpolation, the environment wins, empty counts as unset) is
``backupctl.envfile``; what a replica kind needs (its variables, checks and `Replica`) is its spec
in ``backupctl.kinds``. Several naming conventions are understood so that existing `.env` files
work unchanged; for each setting the first variable that is set wins (see ``CHAINS`` and the README).
"""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from backupctl import kinds as replica_kinds
from backupctl.config import secondary as secondary_replica
from backupctl.envfile import Origin as Origin
from backupctl.envfile import env_search_note as env_search_note
from backupctl.envfile import find_env_file as find_env_file
from backupctl.envfile import read_chains, unknown_variables
from backupctl.envfile import read_env_file as read_env_file
from backupctl.errors import ConfigError, NotFoundError
from backupctl.filekinds import kernel_folder, not_regular
from backupctl.kinds import REPLICA_KINDS as REPLICA_KINDS
from backupctl.kinds import Replica as Replica
from backupctl.kinds.base import Checking, check_remote_path
from backupctl.kinds.base import resolve as _resolve
from backupctl.paths import project_state_dir
from backupctl.versions import capabilities, check_version, default_version

# Setting -> variables that may provide it, first set wins.
CHAINS: dict[str, tuple[str, ...]] = {
    "databases": ("BACKUP_DATABASES",),
    "replica": ("BACKUP_REPLICA",),
    "path": ("BACKUP_PATH",),
    **replica_kinds.variables(),  # each kind's own (bucket, endpoint, credentials...): backupctl/kinds/
    "local_dir": ("BACKUP_LOCAL_DIR",),
    "sync_interval": ("BACKUP_SYNC_INTERVAL",),
    "snapshot_interval": ("BACKUP_SNAPSHOT_INTERVAL",),
    "retention": ("BACKUP_RETENTION",),
    "version": ("LITESTREAM_VERSION",),
    "verify_interval": ("BACKUP_VERIFY_INTERVAL",),
    "drill_interval": ("BACKUP_DRILL_INTERVAL",),
    "continuity_interval": ("BACKUP_CONTINUITY_INTERVAL",),
    "stale_after": ("BACKUP_STALE_AFTER",),
    "stop_timeout": ("BACKUP_STOP_TIMEOUT",),
    # `backupctl serve` and notifications (docs/monitoring.md)
    "http_addr": ("BACKUP_HTTP_ADDR",),
    "http_token": ("BACKUP_HTTP_TOKEN",),
    "notify_url": ("BACKUP_NOTIFY_URL",),
    "notify_fail_url": ("BACKUP_NOTIFY_FAIL_URL",),
    "litestream_metrics_addr": ("BACKUP_LITESTREAM_METRICS_ADDR",),  # litestream's own `addr:` (its /metrics)
}

# A ping URL is a credential too: whoever holds it can report "all good" in your name.
SECRET_SETTINGS = replica_kinds.secret_settings() | {"http_token", "notify_url", "notify_fail_url"}
# Shown masked too: half of a secret (an access key id), and what a kind says is.
MASKED_SETTINGS = SECRET_SETTINGS | replica_kinds.masked_settings()
_KIND_MASKED = replica_kinds.masked_settings()
KIND_CREDENTIALS = replica_kinds.secret_settings() | _KIND_MASKED

DEFAULTS: dict[str, str] = {
    "local_dir": "~/.backupctl/backups",
    "sync_interval": "10s",
    "snapshot_interval": "24h",
    "retention": "168h",
}

KNOWN_VARIABLES = frozenset(v for chain in CHAINS.values() for v in chain) | secondary_replica.KNOWN_VARIABLES
_GO_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration (``10s``, ``1h30m``) in seconds. Raises ValueError for anything else."""
    text = text.strip()
    if not _GO_DURATION.fullmatch(text):
        raise ValueError(text)
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


GO_DURATION_MAX_NS = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds (about 292 years)


def duration_problem(value: str) -> str | None:
    """Why litestream could not use ``value`` as a duration setting, or None. Checked as litestream's
    YAML parser and Go's time.ParseDuration would: no surrounding spaces, a unit, int64 nanoseconds,
    and not truncated to zero."""
    if value != value.strip():
        return f"{value!r} has a leading or trailing space, which litestream's parser refuses"
    try:
        seconds = parse_duration(value)
    except ValueError:
        if re.fullmatch(r"\d+(\.\d+)?", value):
            return f"{value!r} has no unit: litestream would read a bare number as nanoseconds"
        return f"{value!r} is not a duration"
    if seconds * 1e9 > GO_DURATION_MAX_NS:
        return f"{value!r} is longer than litestream can hold (Go durations end at about 292 years, 2562047h)"
    if seconds <= 0:
        return f"{value!r} is not positive"
    if seconds * 1e9 < 1:
        return f"{value!r} is below one nanosecond, which litestream reads as 0"
    return None


@dataclass(frozen=True)
class Credentials:
    """Secrets, kept apart so nothing renders or logs them by accident.

    A replica kind's credentials (an access key pair, a password...) read as attributes too.
    """

    http_token: str | None = None  # `backupctl serve` beyond loopback
    notify_url: str | None = None
    notify_fail_url: str | None = None
    replica: tuple[tuple[str, str], ...] = ()  # the kinds' secret and masked settings that are set
    secondary: tuple[tuple[str, str], ...] = ()  # the secondary replica's (backupctl.config.secondary), own or the primary's

    def __getattr__(self, name: str) -> str | None:
        if name not in KIND_CREDENTIALS:
            raise AttributeError(name)
        return dict(self.replica).get(name)

    def __repr__(self) -> str:  # never print secrets, even in a debugger or a traceback
        return "Credentials(<masked>)"

    def masked_values(self) -> list[str]:
        """The values of the kinds' settings shown masked (an access key id): half of a credential; the
        secondary replica's too."""
        return [v for k, v in (*sorted(self.replica), *self.secondary) if k in _KIND_MASKED and v]

    def secret_values(self) -> list[str]:
        kinds = [v for k, v in (*self.replica, *self.secondary) if k in SECRET_SETTINGS]
        return [v for v in (*kinds, self.http_token, self.notify_url, self.notify_fail_url) if v]


@dataclass(frozen=True)
class Database:
    path: Path
    name: str
    replicas: tuple[Replica, ...]


@dataclass(frozen=True)
class Settings:
    """Validated, effective settings of one project."""

    project_dir: Path
    env_file: Path | None
    databases: tuple[Database, ...]
    replica_kinds: tuple[str, ...]
    version: str
    sync_interval: str
    snapshot_interval: str
    retention: str
    local_dir: Path
    credentials: Credentials
    verify_interval: str | None
    stale_after: str | None
    stop_timeout: str | None
    values: dict[str, str | None] = field(repr=False)
    origins: dict[str, Origin] = field(repr=False)
    warnings: tuple[str, ...] = ()  # worth saying, not failing for (unknown variable names)
    drill_interval: str | None = None
    # How often the supervisor proves each replica whole against the live pages (continuity.py);
    # "off" disables the schedule (the check after each confirmed start stays).
    continuity_interval: str = "1h"
    # BACKUP_DATABASES globs as absolute patterns (restore resolves them against the replica too).
    globs: tuple[str, ...] = ()
    # The second replica of every database (BACKUP_SECONDARY_*, Litestream 0.3), or None.
    secondary: secondary_replica.Secondary | None = None
    # These settings narrowed to one replica of each database, by its config name (replica_views.view).
    replica_view: str | None = None

    @property
    def config_path(self) -> Path:
        """Where `setup` writes litestream.yml by default: beside the .env."""
        return self.project_dir / "litestream.yml"

    @property
    def sync_seconds(self) -> float:
        return parse_duration(self.sync_interval)

    def database(self, name_or_path: str | None) -> list[Database]:
        """Select databases by path or file name; None selects all."""

        if not name_or_path:
            return list(self.databases)
        wanted = Path(name_or_path).expanduser()
        for db in self.databases:
            if name_or_path in (db.name, db.path.stem) or db.path == wanted.absolute().resolve():
                return [db]
        names = ", ".join(db.name for db in self.databases) or "none"
        raise NotFoundError(
            f"no database {name_or_path!r} in the configuration (configured: {names})",
            "name a database by its path or file name, as listed by `backupctl databases`",
        )

    def with_databases(self, paths: list[Path]) -> Settings:
        """These settings plus databases at ``paths`` (replicas derived exactly as for configured ones)."""
        from dataclasses import replace

        known = {db.path for db in self.databases}
        added = tuple(
            _database(p, self.replica_kinds, self.values, self.local_dir, self.version, self.secondary)
            for p in paths
            if p not in known
        )
        if self.replica_view is not None:  # narrowed to one replica: so are the databases added
            added = tuple(replace(db, replicas=tuple(r for r in db.replicas if r.config_name == self.replica_view))
                          for db in added)  # fmt: skip
        return replace(self, databases=self.databases + added)


def load_settings(
    env_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    force_local: bool | None = None,
    replica_globs: bool = False,
) -> Settings:
    """Read and validate the settings. Every problem is reported together in one ConfigError.

    ``replica_globs`` (restore on a new machine): a glob that matches no local file and a database
    whose folder does not exist yet are not errors; the caller resolves ``Settings.globs`` against
    the replica (backupctl.restore.recovery) and creates the folders.
    """
    environ = os.environ if environ is None else environ
    cwd = (cwd or Path.cwd()).absolute()
    path = find_env_file(env_file, cwd)
    file_values = read_env_file(path) if path else {}
    project_dir = path.parent if path else cwd
    source_name = str(path) if path else "environment"

    values, origins = read_chains(
        CHAINS, environ, file_values, source_name,
        lambda setting: default_version() if setting == "version" else DEFAULTS.get(setting),  # pins.json's default
    )  # fmt: skip

    errors = Checking(values, origins, (), project_dir)
    for setting, value in values.items():
        if value is not None and ("\x00" in value or _has_surrogates(value)):
            errors.add(origins[setting].variable or setting, "contains a NUL byte or invalid UTF-8", "remove it")
            values[setting] = None

    version = values["version"] or default_version()
    try:
        version = check_version(version)
    except ConfigError as exc:
        errors.problems.append(f"{exc.message}; {exc.hint}")
        version = default_version()
    caps = capabilities(version)

    durations = (
        "sync_interval",
        "snapshot_interval",
        "retention",
        "verify_interval",
        "drill_interval",
        "continuity_interval",
        "stale_after",
        "stop_timeout",
    )
    for setting in durations:
        value = values[setting]
        if value is None or (setting == "continuity_interval" and value == "off"):
            continue
        var = origins[setting].variable or setting
        problem = duration_problem(value)
        if problem:
            errors.add(var, problem, "write a Go duration with a unit and nothing around it, like 10s, 5m or 24h")

    metrics_addr = values["litestream_metrics_addr"]
    if metrics_addr is not None and not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([1-9][0-9]{0,4})", metrics_addr):
        errors.add(
            "BACKUP_LITESTREAM_METRICS_ADDR",
            f"{metrics_addr!r} is not HOST:PORT",
            "write it like 127.0.0.1:9090 (litestream serves its metrics there, without authentication)",
        )
    elif metrics_addr is not None and int(metrics_addr.rsplit(":", 1)[1]) > 65535:
        errors.add("BACKUP_LITESTREAM_METRICS_ADDR", f"{metrics_addr!r} has a port above 65535", "use a port from 1 to 65535")

    for setting in ("notify_url", "notify_fail_url"):
        url = values[setting]
        if url is not None and has_userinfo(url):
            # Named without the URL: its user:password@ part is the secret to keep out of every output.
            errors.add(
                origins[setting].variable or setting,
                "the URL has a user:password@ part before its host: backupctl would not log in with it, and it would "
                "go to the name resolver as part of the host name (and into error messages)",
                "remove the user:password@ part; if the service needs a credential, use its token URL "
                "(a secret path or query, like a ping URL) instead",
            )

    # None: follow the project's `setup --local` marker; True/False: setup saying which it wants.
    local_mode = local_mode_marker(project_dir).exists() if force_local is None else force_local
    kinds = _replica_kinds(values, origins, errors, local_mode)
    if local_mode and force_local is None:
        origins["replica"] = Origin(None, "backupctl setup --local (run `backupctl setup` to use the .env's replica)")
    if len(kinds) > 1 and not caps.multiple_replicas:
        errors.add(
            "BACKUP_REPLICA",
            f"{','.join(kinds)} asks for {len(kinds)} replicas, but Litestream {version} allows one per database",
            "keep one replica type; " + secondary_replica.refused_on(),
        )

    errors.kinds = kinds
    replica_kinds.check(errors)  # each kind's variables (backupctl/kinds/)

    local_dir = _resolve(values["local_dir"] or DEFAULTS["local_dir"], project_dir)
    db_paths, globs = _database_paths(values["databases"], project_dir, errors, replica_globs)
    # The second replica (BACKUP_SECONDARY_*); local mode (`setup --local`) replicates to the local folder alone.
    secondary = None if local_mode else secondary_replica.read(
        environ, file_values, source_name, errors, caps, local_dir, len(db_paths)
    )  # fmt: skip
    names = [p.name for p in db_paths]
    for name in sorted(n for n, count in Counter(names).items() if count > 1):
        errors.add(
            "BACKUP_DATABASES", f"two databases are both named {name!r}", "rename one: replica paths are derived from file names"
        )
    if caps.database_path_is_uri:
        for p in db_paths:
            if "#" in str(p) or "?" in str(p):
                errors.add(
                    "BACKUP_DATABASES",
                    f"{p} contains '#' or '?': Litestream {version} opens the database as a SQLite URI and cuts the "
                    "path there, so it would never find the real file and replicate nothing",
                    "rename the file or its folder without '#' and '?' (Litestream 0.3.13 takes such paths as they are)",
                )
    check_remote_path(errors, "BACKUP_PATH", values["path"], len(db_paths))

    if secondary is not None and db_paths and not errors.problems:
        first = _database(db_paths[0], kinds, values, local_dir, version, secondary)
        secondary_replica.check_place(first.replicas[0], first.replicas[-1], errors)

    warnings = unknown_variables(file_values, environ, source_name, KNOWN_VARIABLES)
    if errors.problems:
        count = f"{len(errors.problems)} problem{'s' if len(errors.problems) > 1 else ''}"
        if path is None:
            # Outside a project every setting is missing: the missing .env is the cause, so it comes first.
            raise ConfigError(
                f"{env_search_note(cwd)}, which has {count}",
                "run backupctl from your project's folder (or below it), or name the file with --env-file PATH",
                details=errors.problems + warnings,
            )
        raise ConfigError(
            f"{count} in the settings ({path})",
            'fix the variables named above (README, "Settings", lists them all), then run the command again',
            details=errors.problems + warnings,
        )

    databases = tuple(_database(p, kinds, values, local_dir, version, secondary) for p in db_paths)
    return Settings(
        project_dir=project_dir,
        env_file=path,
        databases=databases,
        replica_kinds=kinds,
        version=version,
        sync_interval=values["sync_interval"] or DEFAULTS["sync_interval"],
        snapshot_interval=values["snapshot_interval"] or DEFAULTS["snapshot_interval"],
        retention=values["retention"] or DEFAULTS["retention"],
        local_dir=local_dir,
        credentials=Credentials(
            replica=tuple((k, v) for k in sorted(KIND_CREDENTIALS) if (v := values.get(k))),
            http_token=values["http_token"],
            notify_url=values["notify_url"],
            notify_fail_url=values["notify_fail_url"],
            secondary=secondary.credentials if secondary is not None else (),
        ),
        verify_interval=values["verify_interval"],
        drill_interval=values["drill_interval"],
        continuity_interval=values["continuity_interval"] or "1h",
        globs=tuple(globs),
        stale_after=values["stale_after"],
        stop_timeout=values["stop_timeout"],
        values=values,
        origins=origins,
        warnings=tuple(warnings),
        secondary=secondary,
    )


def has_userinfo(url: str) -> bool:
    """True when ``url`` carries ``user:password@`` (or just ``user@``) before its host."""
    from urllib.parse import urlsplit

    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # an unbalanced [ in the host: look at the authority as written
        netloc = url.partition("//")[2].split("/", 1)[0]
    return "@" in netloc


LOCAL_MODE_MARKER = "local-mode"


def local_mode_marker(project_dir: Path) -> Path:
    """Present while the project uses `setup --local` (chora's backup-local), so that start,
    status and restore all agree on the local-folder replica until a plain `setup`."""

    return project_state_dir(project_dir) / LOCAL_MODE_MARKER


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _replica_kinds(
    values: dict[str, str | None], origins: dict[str, Origin], errors: Checking, force_local: bool
) -> tuple[str, ...]:
    if force_local:
        origins["replica"] = Origin(None, "--local")
        values["replica"] = "file"
        return ("file",)
    raw = values["replica"]
    if not raw:
        kind = replica_kinds.implied(values)
        origins["replica"] = Origin(None, "derived")
        values["replica"] = kind
        return (kind,)
    kinds: list[str] = []
    for part in raw.split(","):
        spec = replica_kinds.find(part)
        kind = spec.name if spec else part.strip().lower()
        if spec is None:
            errors.add("BACKUP_REPLICA", f"unknown replica type {part.strip()!r}", f"use one of {', '.join(REPLICA_KINDS)}")
        elif kind in kinds:
            errors.add("BACKUP_REPLICA", f"{kind!r} is listed twice", "list each replica type once")
        else:
            kinds.append(kind)
    return tuple(kinds)


_KERNEL_FILES = "where the kernel makes up every file as it is read: none is a database"


def _database_paths(
    raw: str | None, project_dir: Path, errors: Checking, replica_globs: bool = False
) -> tuple[list[Path], list[str]]:
    """The database files, and every glob as an absolute pattern (also when it matched files)."""
    # An empty entry (`a.db,`, `a.db,,b.db`) names no file: it is skipped, as a trailing comma in a
    # list usually is, and every database that is named is still backed up. A value whose entries are
    # all empty (",", " , ", a tab) names nothing at all: that is the empty value, refused in its words,
    # not a green setup that backs up nothing.
    items = [s.strip() for s in raw.split(",") if s.strip()] if raw else []
    if not items:
        errors.add(
            "BACKUP_DATABASES",
            "no database to back up",
            # Rails 8 keeps its databases directly in storage/ (storage/db/ was Campfire's own layout).
            "set BACKUP_DATABASES to your SQLite file(s), e.g. storage/production.sqlite3 (Rails 8) or app.db "
            "(comma-separated, globs allowed)",
        )
        return [], []
    paths: list[Path] = []
    seen: set[Path] = set()  # the same order as paths, looked up in constant time (1,000 tenants)
    globs: list[str] = []
    for item in items:
        path = _resolve(item, project_dir)
        if glob.has_magic(item):
            globs.append(str(path))
            matches = sorted(_resolve_files(glob.glob(str(path))))
            if not matches and not replica_globs:
                errors.add(
                    "BACKUP_DATABASES",
                    f"{item!r} matches no file",
                    "check the pattern, or name the database file; on a new machine, `backupctl restore` "
                    "(or `start --restore-if-missing`) finds the databases in the replica",
                )
            for m in matches:
                if kernel := kernel_folder(m, resolved=True):
                    what = f"{item!r} matches {str(m)!r}, in {kernel}, {_KERNEL_FILES}"
                    errors.add("BACKUP_DATABASES", what, "narrow the pattern to your SQLite files")
                elif m not in seen:
                    seen.add(m)
                    paths.append(m)
            continue
        # Only stat, never open: opening a FIFO waits for a writer (setup hung), a device never ends.
        # A path that does not exist yet passes (below): litestream waits for the application to create it.
        what = not_regular(path)
        named = repr(item) + (f" (a link to {str(path.resolve())!r})" if path.is_symlink() else "")
        if kernel := kernel_folder(path):
            errors.add("BACKUP_DATABASES", f"{named} is in {kernel}, {_KERNEL_FILES}", "name your SQLite database file")
        elif what == "a folder":
            errors.add("BACKUP_DATABASES", f"{item!r} is a folder", "name the SQLite file inside it")
        elif what is not None:
            errors.add(
                "BACKUP_DATABASES",
                f"{named} is {what}, not a regular file, so it cannot be an SQLite database",
                "name the SQLite database file itself",
            )
        elif not path.parent.is_dir() and not replica_globs:
            errors.add("BACKUP_DATABASES", f"the folder of {item!r} ({path.parent}) does not exist", "create it, or fix the path")
        elif path.resolve() not in seen:
            # Resolved (symlinks, ..): one database has one name for locks and "is this the live file?".
            seen.add(path.resolve())
            paths.append(path.resolve())
    return paths, globs


def _resolve_files(names: list[str]) -> list[Path]:
    """The regular files among ``names``, each resolved (symlinks, ..) as ``Path.resolve`` would,
    with each folder resolved once rather than once per file (a glob of 1,000 tenants)."""
    folders: dict[str, str] = {}
    found = []
    for name in names:
        if not os.path.isfile(name):
            continue
        if os.path.islink(name):
            found.append(Path(name).resolve())
            continue
        folder, base = os.path.split(name)
        if folder not in folders:
            folders[folder] = os.path.realpath(folder)
        found.append(Path(folders[folder], base))
    return found


def database_paths_now(settings: Settings) -> list[Path]:
    """The files BACKUP_DATABASES names now (its globs matched again), in the order a fresh load lists them."""
    checking = Checking(dict(settings.values), {}, (), settings.project_dir)
    return _database_paths(settings.values["databases"], settings.project_dir, checking, replica_globs=True)[0]


def _database(
    path: Path,
    kinds: tuple[str, ...],
    values: dict[str, str | None],
    local_dir: Path,
    version: str,
    secondary: secondary_replica.Secondary | None = None,
) -> Database:
    """One database and its replicas; ``values`` are the validated settings (endpoint already derived)."""
    prefix = values["path"].strip("/") if values["path"] else None
    remote_path = prefix.replace("{name}", path.name) if prefix else path.name
    caps = capabilities(version)
    replicas = tuple(replica_kinds.spec(k).replica(path.name, remote_path, values, local_dir, caps) for k in kinds)
    if secondary is not None:
        replicas += (secondary.replica(path.name, caps),)
    return Database(path=path, name=path.name, replicas=replicas)
