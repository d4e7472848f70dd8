"""Settings from `.env` and the process environment, validated all at once.

The `.env` is read with python-dotenv without touching ``os.environ`` and without
``${VAR}`` interpolation (a `$` in a value is kept as written). A variable set in the
process environment overrides the same variable in the file. Empty values count as unset.

Several naming conventions are understood so that existing `.env` files work unchanged;
for each setting the first variable that is set wins (see ``CHAINS`` and the README).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from backupctl.errors import ConfigError
from backupctl.versions import capabilities, check_version, default_version

REPLICA_KINDS = ("file", "s3", "r2", "sftp", "gs", "abs")

# Setting -> variables that may provide it, first set wins.
CHAINS: dict[str, tuple[str, ...]] = {
    "databases": ("BACKUP_DATABASES",),
    "replica": ("BACKUP_REPLICA",),
    "bucket": ("BACKUP_BUCKET", "R2_BUCKET", "LITESTREAM_REPLICA_BUCKET"),
    "path": ("BACKUP_PATH",),
    "endpoint": ("BACKUP_ENDPOINT", "LITESTREAM_REPLICA_ENDPOINT"),
    "region": ("BACKUP_REGION", "LITESTREAM_REPLICA_REGION", "AWS_DEFAULT_REGION", "AWS_REGION"),
    "force_path_style": ("BACKUP_FORCE_PATH_STYLE",),
    "r2_account_id": ("BACKUP_R2_ACCOUNT_ID", "R2_ACCOUNT_ID"),
    "access_key_id": (
        "BACKUP_ACCESS_KEY_ID",
        "R2_ACCESS_KEY_ID",
        "LITESTREAM_ACCESS_KEY_ID",
        "AWS_ACCESS_KEY_ID",
    ),
    "secret_access_key": (
        "BACKUP_SECRET_ACCESS_KEY",
        "R2_SECRET_ACCESS_KEY",
        "LITESTREAM_SECRET_ACCESS_KEY",
        "AWS_SECRET_ACCESS_KEY",
    ),
    "local_dir": ("BACKUP_LOCAL_DIR",),
    "sync_interval": ("BACKUP_SYNC_INTERVAL",),
    "snapshot_interval": ("BACKUP_SNAPSHOT_INTERVAL",),
    "retention": ("BACKUP_RETENTION",),
    "version": ("LITESTREAM_VERSION",),
    "sftp_host": ("BACKUP_SFTP_HOST",),
    "sftp_user": ("BACKUP_SFTP_USER",),
    "sftp_key_path": ("BACKUP_SFTP_KEY_PATH",),
    "sftp_password": ("BACKUP_SFTP_PASSWORD",),
    "gs_credentials_file": ("BACKUP_GS_CREDENTIALS_FILE", "GOOGLE_APPLICATION_CREDENTIALS"),
    "abs_account_name": ("BACKUP_ABS_ACCOUNT_NAME",),
    "abs_account_key": ("BACKUP_ABS_ACCOUNT_KEY", "LITESTREAM_AZURE_ACCOUNT_KEY"),
    "verify_interval": ("BACKUP_VERIFY_INTERVAL",),
    "drill_interval": ("BACKUP_DRILL_INTERVAL",),
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
SECRET_SETTINGS = frozenset(
    {"secret_access_key", "sftp_password", "abs_account_key", "http_token", "notify_url", "notify_fail_url"}
)
# Shown masked too: an access key id is not a secret on its own, but it is half of one.
MASKED_SETTINGS = SECRET_SETTINGS | {"access_key_id"}

DEFAULTS: dict[str, str] = {
    "local_dir": "~/.backupctl/backups",
    "sync_interval": "10s",
    "snapshot_interval": "24h",
    "retention": "168h",
}

KNOWN_VARIABLES = frozenset(v for chain in CHAINS.values() for v in chain)
# Read elsewhere (by backupctl or by litestream): not settings, but not typos either.
OTHER_KNOWN_VARIABLES = frozenset(
    {
        "BACKUPCTL_ENV_FILE", "BACKUPCTL_STATE_DIR", "BACKUPCTL_CACHE_DIR", "BACKUPCTL_HOME", "BACKUPCTL_DEBUG",
        "BACKUPCTL_LITESTREAM_BIN", "BACKUPCTL_ALLOW_VERSION_MISMATCH", "BACKUPCTL_LITESTREAM_BASE_URL",
        "BACKUPCTL_CA_BUNDLE", "BACKUPCTL_PRICES", "BACKUPCTL_NO_PDEATHSIG", "BACKUPCTL_SFTP_PASSWORD",
        "BACKUPCTL_TEST_CACHE",  # backupctl's own test suite
        "LITESTREAM_CONFIG",  # litestream's; backupctl drops it and passes -config (and says so)
    }
)  # fmt: skip
# Names in these families that are neither of the above are most likely typos: warn, with "did you mean".
WATCHED_PREFIXES = ("BACKUP_", "BACKUPCTL_", "R2_", "LITESTREAM_")

_GO_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


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
class Origin:
    """Where a setting's value came from."""

    variable: str | None  # None: the default
    source: str  # "environment", the .env path, "default", "derived"


@dataclass(frozen=True)
class Credentials:
    """Secrets, kept apart so nothing renders or logs them by accident."""

    access_key_id: str | None = None
    secret_access_key: str | None = None
    sftp_password: str | None = None
    abs_account_key: str | None = None
    http_token: str | None = None  # `backupctl serve` beyond loopback
    notify_url: str | None = None
    notify_fail_url: str | None = None

    def __repr__(self) -> str:  # never print secrets, even in a debugger or a traceback
        return "Credentials(<masked>)"

    def secret_values(self) -> list[str]:
        return [
            v
            for v in (self.secret_access_key, self.sftp_password, self.abs_account_key, self.http_token, self.notify_url,
                      self.notify_fail_url)
            if v
        ]  # fmt: skip


@dataclass(frozen=True)
class Replica:
    """One replica destination of one database, in litestream's terms."""

    kind: str  # backupctl kind: file s3 r2 sftp gs abs
    litestream_type: str  # what litestream's config calls it
    path: str  # folder (file) or prefix inside the bucket
    bucket: str | None = None
    endpoint: str | None = None
    region: str | None = None
    force_path_style: bool | None = None
    sftp_host: str | None = None
    sftp_user: str | None = None
    sftp_key_path: str | None = None
    sftp_password_env: str | None = None  # the variable litestream expands at run time
    abs_account_name: str | None = None

    @property
    def destination(self) -> str:
        """A human-readable, secret-free name of where the backup lives (locks use ``lock_key``)."""
        if self.kind == "file":
            return f"file://{self.path}"
        if self.kind in ("s3", "r2"):
            host = self.endpoint or "s3.amazonaws.com"
            return f"s3://{self.bucket}/{self.path} at {host}"
        if self.kind == "sftp":
            return f"sftp://{self.sftp_user or ''}@{self.sftp_host}/{self.path}"
        if self.kind == "gs":
            return f"gs://{self.bucket}/{self.path}"
        return f"abs://{self.abs_account_name}@{self.bucket}/{self.path}"

    @property
    def lock_key(self) -> str:
        """The replica's location normalised, so two spellings of one place get one key (and one lock).

        A folder is its real path (``..`` and symlinks resolved); an S3-style endpoint has its scheme
        and host in lower case, default ports and trailing slashes dropped; paths lose empty segments.
        """
        if self.kind == "file":
            return "file://" + os.path.realpath(os.path.expanduser(self.path))
        clean = "/".join(part for part in self.path.split("/") if part and part != ".")
        if self.kind in ("s3", "r2"):
            endpoint = self.endpoint or "s3.{}.amazonaws.com".format(self.region or "us-east-1")
            return f"s3://{_normal_endpoint(endpoint)}/{self.bucket}/{clean}"
        if self.kind == "sftp":
            return f"sftp://{self.sftp_user or ''}@{(self.sftp_host or '').lower()}/{clean}"
        if self.kind == "gs":
            return f"gs://{self.bucket}/{clean}"
        return f"abs://{(self.abs_account_name or '').lower()}/{self.bucket}/{clean}"


def _normal_endpoint(endpoint: str) -> str:
    """`HTTPS://Host:443/` and `https://host` alike: host[:port] in lower case, default ports dropped."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    scheme = (parts.scheme or "https").lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None or (scheme, port) in (("https", 443), ("http", 80)):
        return host
    return f"{host}:{port}"


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
    gs_credentials_file: str | None
    verify_interval: str | None
    stale_after: str | None
    stop_timeout: str | None
    values: dict[str, str | None] = field(repr=False)
    origins: dict[str, Origin] = field(repr=False)
    warnings: tuple[str, ...] = ()  # worth saying, not failing for (unknown variable names)
    drill_interval: str | None = None
    # BACKUP_DATABASES globs as absolute patterns (restore resolves them against the replica too).
    globs: tuple[str, ...] = ()

    @property
    def config_path(self) -> Path:
        """Where `setup` writes litestream.yml by default: beside the .env."""
        return self.project_dir / "litestream.yml"

    @property
    def sync_seconds(self) -> float:
        return parse_duration(self.sync_interval)

    def database(self, name_or_path: str | None) -> list[Database]:
        """Select databases by path or file name; None selects all."""
        from backupctl.errors import NotFoundError

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
            _database(p, self.replica_kinds, self.values, self.local_dir, self.version) for p in paths if p not in known
        )
        return replace(self, databases=self.databases + added)


def read_env_file(path: Path) -> dict[str, str]:
    """The .env's variables, exactly as written (no interpolation, os.environ untouched)."""
    from dotenv import dotenv_values

    try:
        raw = dotenv_values(path, interpolate=False, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason})", "save the .env as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check the path and its permissions") from None
    return {k: v for k, v in raw.items() if v is not None}


def find_env_file(env_file: Path | None, cwd: Path) -> Path | None:
    """The .env to read: the one named, else the nearest `.env` in the current folder or above it
    (as git finds `.git`), so a command run from a project's subfolder reads the project's settings."""
    if env_file is not None:
        path = env_file.expanduser()
        if not path.is_absolute():
            path = cwd / path
        if not path.is_file():
            raise ConfigError(
                f"--env-file {env_file}: no such file",
                "create it (README, \"Settings\", lists every variable), or drop --env-file to use the project's .env",
            )
        return path.resolve()
    for folder in (cwd, *cwd.parents):
        candidate = folder / ".env"
        if candidate.is_file():
            return candidate.resolve()
    return None


def env_search_note(cwd: Path) -> str:
    """Where find_env_file looked when it found nothing, in words."""
    return f"no .env found in {cwd} or any folder above it, so only the process environment was read"


class _Collector:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, variable: str, what: str, fix: str) -> None:
        self.problems.append(f"{variable}: {what}; {fix}")


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
    the replica (backupctl.recovery) and creates the folders.
    """
    environ = os.environ if environ is None else environ
    cwd = (cwd or Path.cwd()).absolute()
    path = find_env_file(env_file, cwd)
    file_values = read_env_file(path) if path else {}
    project_dir = path.parent if path else cwd
    source_name = str(path) if path else "environment"

    values: dict[str, str | None] = {}
    origins: dict[str, Origin] = {}
    for setting, chain in CHAINS.items():
        values[setting] = None
        for variable in chain:
            if environ.get(variable):
                values[setting], origins[setting] = environ[variable], Origin(variable, "environment")
                break
            if file_values.get(variable):
                values[setting], origins[setting] = file_values[variable], Origin(variable, source_name)
                break
        else:
            default = default_version() if setting == "version" else DEFAULTS.get(setting)  # pins.json's default
            if default is not None:
                values[setting], origins[setting] = default, Origin(None, "default")

    errors = _Collector()
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
        "stale_after",
        "stop_timeout",
    )
    for setting in durations:
        value = values[setting]
        if value is None:
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

    # None: follow the project's `setup --local` marker; True/False: setup saying which it wants.
    local_mode = local_mode_marker(project_dir).exists() if force_local is None else force_local
    kinds = _replica_kinds(values, origins, errors, local_mode)
    if local_mode and force_local is None:
        origins["replica"] = Origin(None, "backupctl setup --local (run `backupctl setup` to use the .env's replica)")
    if len(kinds) > 1 and not caps.multiple_replicas:
        errors.add(
            "BACKUP_REPLICA",
            f"{','.join(kinds)} asks for {len(kinds)} replicas, but Litestream {version} allows one per database",
            "keep one replica type, or set LITESTREAM_VERSION=0.3.13 (the only pin with several replicas)",
        )

    endpoint = values["endpoint"]
    if "r2" in kinds and not endpoint:
        account = values["r2_account_id"]
        if not account:
            errors.add(
                "R2_ACCOUNT_ID",
                "R2 needs the Cloudflare account id to build its endpoint",
                "set R2_ACCOUNT_ID (shown in the R2 dashboard), or BACKUP_ENDPOINT",
            )
        elif not re.fullmatch(r"[A-Za-z0-9-]+", account):
            errors.add("R2_ACCOUNT_ID", "is not an account id (letters, digits and '-')", "copy it from the R2 dashboard")
        else:
            endpoint = f"https://{account}.r2.cloudflarestorage.com"
            origins["endpoint"] = Origin(origins["r2_account_id"].variable, "derived")
    if endpoint and any(k in kinds for k in ("s3", "r2")) and not _valid_endpoint(endpoint):
        errors.add(
            origins["endpoint"].variable or "BACKUP_ENDPOINT",
            f"{endpoint!r} is not an http(s) URL with a host (and a port from 1 to 65535, if any)",
            "write it like https://<account>.r2.cloudflarestorage.com or http://127.0.0.1:9000",
        )
    values["endpoint"] = endpoint

    if any(k in kinds for k in ("s3", "r2", "gs", "abs")) and not values["bucket"]:
        which = "/".join(k for k in kinds if k in ("s3", "r2", "gs", "abs"))
        errors.add("BACKUP_BUCKET", f"a {which} replica needs a bucket (or container)", "set BACKUP_BUCKET (or R2_BUCKET)")
    if "r2" in kinds:
        for setting, var in (("access_key_id", "R2_ACCESS_KEY_ID"), ("secret_access_key", "R2_SECRET_ACCESS_KEY")):
            if not values[setting]:
                errors.add(var, "R2 needs an API token's access key pair", f"set {var} (R2 → Manage R2 API Tokens)")
    if "sftp" in kinds:
        if not values["sftp_host"]:
            errors.add("BACKUP_SFTP_HOST", "an sftp replica needs a host", "set BACKUP_SFTP_HOST=host or host:port")
        if not values["sftp_user"]:
            errors.add("BACKUP_SFTP_USER", "an sftp replica needs a user", "set BACKUP_SFTP_USER")
        if not values["sftp_key_path"] and not values["sftp_password"]:
            errors.add(
                "BACKUP_SFTP_KEY_PATH",
                "an sftp replica needs a key file or a password",
                "set BACKUP_SFTP_KEY_PATH=~/.ssh/id_ed25519 (or BACKUP_SFTP_PASSWORD)",
            )
        password = values["sftp_password"]
        if password and re.search(r"['\x00-\x1f\x7f]", password):
            errors.add(
                "BACKUP_SFTP_PASSWORD",
                "contains a quote or control character, which cannot be passed through litestream's config safely",
                "use a key file (BACKUP_SFTP_KEY_PATH) or a password without ' and control characters",
            )
    if "abs" in kinds and not values["abs_account_name"]:
        errors.add("BACKUP_ABS_ACCOUNT_NAME", "an abs replica needs the storage account name", "set BACKUP_ABS_ACCOUNT_NAME")
    if "gs" in kinds and values["gs_credentials_file"]:
        creds = _resolve(values["gs_credentials_file"], project_dir)
        if not creds.is_file():
            errors.add(
                origins["gs_credentials_file"].variable or "BACKUP_GS_CREDENTIALS_FILE",
                f"{creds} does not exist",
                "point it at the service-account JSON key file",
            )
        values["gs_credentials_file"] = str(creds)

    if values["force_path_style"] is not None:
        flag = values["force_path_style"].strip().lower()
        if flag not in _TRUE | _FALSE:
            errors.add("BACKUP_FORCE_PATH_STYLE", f"{values['force_path_style']!r} is not true or false", "write true or false")

    local_dir = _resolve(values["local_dir"] or DEFAULTS["local_dir"], project_dir)
    db_paths, globs = _database_paths(values["databases"], project_dir, errors, replica_globs)
    names = [p.name for p in db_paths]
    for name in sorted({n for n in names if names.count(n) > 1}):
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
    prefix = values["path"]
    if prefix is not None:
        prefix = prefix.strip("/")
        if not prefix:
            errors.add("BACKUP_PATH", "is only slashes", "write a prefix like backups/{name}, or leave it unset")
        elif any(part in (".", "..") for part in prefix.split("/")):
            errors.add(
                "BACKUP_PATH",
                f"{prefix!r} has a '.' or '..' segment: object stores take it literally or reject every upload (400)",
                "write a plain prefix like backups/{name}",
            )
        elif len(db_paths) > 1 and "{name}" not in prefix:
            errors.add(
                "BACKUP_PATH",
                f"{prefix!r} would put {len(db_paths)} databases in one replica path",
                "include {name} in it, like backups/{name}, so each database gets its own",
            )

    warnings = unknown_variables(file_values, environ, source_name)
    if errors.problems:
        raise ConfigError(
            f"{len(errors.problems)} problem{'s' if len(errors.problems) > 1 else ''} in the settings"
            + (f" ({path})" if path else ""),
            "fix the variables named above (README, \"Settings\", lists them all), then run the command again"
            if path
            else "run backupctl from your project's folder (or below it), or name the file with --env-file PATH",
            details=errors.problems + warnings + ([] if path else [env_search_note(cwd)]),
        )

    databases = tuple(_database(p, kinds, values, local_dir, version) for p in db_paths)
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
            access_key_id=values["access_key_id"],
            secret_access_key=values["secret_access_key"],
            sftp_password=values["sftp_password"],
            abs_account_key=values["abs_account_key"],
            http_token=values["http_token"],
            notify_url=values["notify_url"],
            notify_fail_url=values["notify_fail_url"],
        ),
        gs_credentials_file=values["gs_credentials_file"],
        verify_interval=values["verify_interval"],
        drill_interval=values["drill_interval"],
        globs=tuple(globs),
        stale_after=values["stale_after"],
        stop_timeout=values["stop_timeout"],
        values=values,
        origins=origins,
        warnings=tuple(warnings),
    )


def unknown_variables(file_values: Mapping[str, str], environ: Mapping[str, str], file_name: str) -> list[str]:
    """One warning per BACKUP_/BACKUPCTL_/R2_/LITESTREAM_ name that backupctl does not read (a typo
    like BACKUP_DATABASE is otherwise silently ignored), with the closest known name."""
    import difflib

    known = sorted(KNOWN_VARIABLES | OTHER_KNOWN_VARIABLES)
    found = [(name, file_name) for name in file_values]
    found += [(name, "environment") for name in environ if name not in file_values]
    warnings = []
    for name, where in found:
        if not name.startswith(WATCHED_PREFIXES) or name in KNOWN_VARIABLES or name in OTHER_KNOWN_VARIABLES:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else " (README, \"Settings\", lists the variables)"
        warnings.append(f"{name} (in {where}) is not a variable backupctl reads, so it is ignored{hint}")
    return warnings


LOCAL_MODE_MARKER = "local-mode"


def local_mode_marker(project_dir: Path) -> Path:
    """Present while the project uses `setup --local` (chora's backup-local), so that start,
    status and restore all agree on the local-folder replica until a plain `setup`."""
    from backupctl.paths import project_state_dir

    return project_state_dir(project_dir) / LOCAL_MODE_MARKER


def _valid_endpoint(endpoint: str) -> bool:
    from urllib.parse import urlsplit

    if not re.match(r"^https?://[^\s/]+", endpoint):
        return False
    try:
        parts = urlsplit(endpoint)
        return bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # a port that is not a number, or out of range
        return False


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).absolute()


def _replica_kinds(
    values: dict[str, str | None], origins: dict[str, Origin], errors: _Collector, force_local: bool
) -> tuple[str, ...]:
    if force_local:
        origins["replica"] = Origin(None, "--local")
        values["replica"] = "file"
        return ("file",)
    raw = values["replica"]
    if not raw:
        if values["r2_account_id"]:
            kind = "r2"
        elif values["bucket"]:
            kind = "s3"
        else:
            kind = "file"
        origins["replica"] = Origin(None, "derived")
        values["replica"] = kind
        return (kind,)
    kinds: list[str] = []
    for part in raw.split(","):
        kind = part.strip().lower()
        if kind == "gcs":
            kind = "gs"
        if kind not in REPLICA_KINDS:
            errors.add("BACKUP_REPLICA", f"unknown replica type {part.strip()!r}", f"use one of {', '.join(REPLICA_KINDS)}")
        elif kind in kinds:
            errors.add("BACKUP_REPLICA", f"{kind!r} is listed twice", "list each replica type once")
        else:
            kinds.append(kind)
    return tuple(kinds)


def _database_paths(
    raw: str | None, project_dir: Path, errors: _Collector, replica_globs: bool = False
) -> tuple[list[Path], list[str]]:
    """The database files, and every glob as an absolute pattern (also when it matched files)."""
    if not raw:
        errors.add(
            "BACKUP_DATABASES",
            "no database to back up",
            "set BACKUP_DATABASES to your SQLite file(s), e.g. storage/db/production.sqlite3 (comma-separated, globs allowed)",
        )
        return [], []
    paths: list[Path] = []
    globs: list[str] = []
    for item in (s.strip() for s in raw.split(",")):
        if not item:
            continue
        path = _resolve(item, project_dir)
        if glob.has_magic(item):
            globs.append(str(path))
            matches = sorted(Path(m).resolve() for m in glob.glob(str(path)) if Path(m).is_file())
            if not matches and not replica_globs:
                errors.add(
                    "BACKUP_DATABASES",
                    f"{item!r} matches no file",
                    "check the pattern, or name the database file; on a new machine, `backupctl restore` "
                    "(or `start --restore-if-missing`) finds the databases in the replica",
                )
            paths.extend(m for m in matches if m not in paths)
            continue
        if path.is_dir():
            errors.add("BACKUP_DATABASES", f"{item!r} is a folder", "name the SQLite file inside it")
        elif not path.parent.is_dir() and not replica_globs:
            errors.add("BACKUP_DATABASES", f"the folder of {item!r} ({path.parent}) does not exist", "create it, or fix the path")
        elif path.resolve() not in paths:
            # Resolved (symlinks, ..): one database has one name for locks and "is this the live file?".
            paths.append(path.resolve())
    return paths, globs


def database_paths_now(settings: Settings) -> list[Path]:
    """The files BACKUP_DATABASES names now (its globs matched again), in the order a fresh load lists them."""
    return _database_paths(settings.values["databases"], settings.project_dir, _Collector(), replica_globs=True)[0]


def _database(path: Path, kinds: tuple[str, ...], values: dict[str, str | None], local_dir: Path, version: str) -> Database:
    """One database and its replicas; ``values`` are the validated settings (endpoint already derived)."""
    flag = (values["force_path_style"] or "").strip().lower()
    force_path_style = True if flag in _TRUE else False if flag in _FALSE else None
    prefix = values["path"].strip("/") if values["path"] else None
    gs_type = capabilities(version).gs_type_name
    return Database(
        path=path,
        name=path.name,
        replicas=tuple(
            _replica(kind, path.name, prefix, values, values["endpoint"], force_path_style, local_dir, gs_type) for kind in kinds
        ),
    )


def _replica(
    kind: str,
    name: str,
    prefix: str | None,
    values: dict[str, str | None],
    endpoint: str | None,
    force_path_style: bool | None,
    local_dir: Path,
    gs_type_name: str,
) -> Replica:
    remote_path = prefix.replace("{name}", name) if prefix else name
    if kind == "file":
        return Replica(kind="file", litestream_type="file", path=str(local_dir / name))
    if kind in ("s3", "r2"):
        region = values["region"] or ("auto" if kind == "r2" else "us-east-1")
        if force_path_style is None:
            # Custom S3-compatible servers (MinIO, SeaweedFS) need path style; AWS and R2 do not.
            force_path_style = bool(endpoint) and kind == "s3"
        return Replica(
            kind=kind,
            litestream_type="s3",
            path=remote_path,
            bucket=values["bucket"],
            endpoint=endpoint,
            region=region,
            force_path_style=force_path_style,
        )
    if kind == "sftp":
        return Replica(
            kind="sftp",
            litestream_type="sftp",
            path=remote_path,
            sftp_host=values["sftp_host"],
            sftp_user=values["sftp_user"],
            sftp_key_path=str(Path(values["sftp_key_path"]).expanduser()) if values["sftp_key_path"] else None,
            sftp_password_env="BACKUPCTL_SFTP_PASSWORD" if values["sftp_password"] else None,
        )
    if kind == "gs":
        return Replica(kind="gs", litestream_type=gs_type_name, path=remote_path, bucket=values["bucket"])
    return Replica(
        kind="abs",
        litestream_type="abs",
        path=remote_path,
        bucket=values["bucket"],
        abs_account_name=values["abs_account_name"],
    )


def mask(value: str | None) -> str:
    """At most the last 4 characters of a secret; short ones are fully hidden."""
    if not value:
        return ""
    if len(value) < 12:
        return "****"
    return "****" + value[-4:]
