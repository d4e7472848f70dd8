"""What every replica kind is made of: the `Replica` record, the validation context, and the
`ReplicaKind` spec each kind fills in (``backupctl/kinds/<kind>.py``).

A spec declares its `.env` variables and which of them are secrets, checks them, builds the
`Replica` of one database, names its destination and lock key, gives its template the values it
prints, gives litestream the credentials through the environment (never argv or files), says
where to test that it is reachable, probes it for `doctor`, lists its objects for `cost`, and
prices it. Defaults here are what a kind without that ability does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from backupctl.envfile import Origin
from backupctl.findings import INFO, Check

if TYPE_CHECKING:
    from backupctl.config.settings import Settings
    from backupctl.findings import Check
    from backupctl.versions import Capabilities

# Shared by every kind that keeps its replica in a bucket (or an Azure container).
BUCKET_VARIABLES = ("BACKUP_BUCKET", "R2_BUCKET", "LITESTREAM_REPLICA_BUCKET")
PROBE_PREFIX = ".backupctl-doctor-probe-"  # doctor's probe files and objects; `cost` does not count them



# The kinds by name, filled once by the registry (``backupctl.kinds.register``) as the package loads,
# before any Replica can be built: a Replica finds its spec here, never by importing the registry,
# which imports every kind module (and each of them this one).
_BY_NAME: dict[str, ReplicaKind] = {}
_ALL_OPTIONS: set[str] = set()  # every option any kind's Replica has (another kind's reads as None)


def register(specs: tuple[ReplicaKind, ...]) -> dict[str, ReplicaKind]:
    """Make ``specs`` the kinds a Replica knows; returns them by name."""
    _BY_NAME.update({s.name: s for s in specs})
    _ALL_OPTIONS.update(o for s in specs for o in s.options)
    return dict(_BY_NAME)
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


@dataclass
class Checking:
    """What a kind's checks read and write: the settings' values (a kind may derive one, like R2's
    endpoint), where each came from, the problems found so far, and the kinds in use."""

    values: dict[str, str | None]
    origins: dict[str, Origin]
    kinds: tuple[str, ...]
    project_dir: Path
    problems: list[str] = field(default_factory=list)
    done: set[str] = field(default_factory=set)  # checks shared by several kinds run once

    def add(self, variable: str, what: str, fix: str) -> None:
        self.problems.append(f"{variable}: {what}; {fix}")

    def once(self, name: str) -> bool:
        """True the first time a shared check asks, False after."""
        if name in self.done:
            return False
        self.done.add(name)
        return True

    def variable(self, setting: str, default: str) -> str:
        origin = self.origins.get(setting)
        return origin.variable if origin and origin.variable else default


@dataclass(frozen=True)
class Prices:
    """One provider's prices in USD. Operations are per million requests for both providers."""

    storage_gb_month: float
    writes_per_million: float  # R2 class A (PUT, LIST); S3 PUT/COPY/POST/LIST
    reads_per_million: float  # R2 class B (GET, HEAD); S3 GET/SELECT
    egress_gb: float
    free_storage_gb: float = 0.0
    free_writes_million: float = 0.0
    free_reads_million: float = 0.0


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: float  # epoch seconds


class Replica:
    """One replica destination of one database, in litestream's terms.

    ``kind`` names its spec; the other fields are the options that kind declares (``bucket``,
    ``sftp_host``, ...), read as attributes. An option of another kind reads as None.

    ``name`` is its name in a 0.3 config (``name:``, what ``-replica NAME`` takes): None for a
    replica named by its kind, as every replica of ``BACKUP_REPLICA`` is. ``refs`` (template key,
    variable) are credentials of its own that its template writes as references to variables
    backupctl puts in litestream's environment (the secondary replica's, ``backupctl.config.secondary``).
    """

    __slots__ = ("kind", "litestream_type", "path", "_options", "name", "refs")
    kind: str  # backupctl kind: file s3 r2 sftp gs abs
    litestream_type: str  # what litestream's config calls it
    path: str  # folder (file) or prefix inside the bucket
    name: str | None
    refs: tuple[tuple[str, str], ...]

    def __init__(
        self,
        kind: str,
        litestream_type: str,
        path: str,
        *,
        name: str | None = None,
        refs: tuple[tuple[str, str], ...] = (),
        **options: Any,
    ) -> None:
        unknown = set(options) - set(_BY_NAME[kind].options)
        if unknown:
            raise TypeError(f"a {kind} replica has no option {', '.join(sorted(unknown))}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "litestream_type", litestream_type)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "_options", tuple(sorted(options.items())))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "refs", tuple(refs))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in _ALL_OPTIONS:
            raise AttributeError(name)
        return dict(self._options).get(name)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Replica cannot be changed")

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle rebuild it through __init__
        return (_rebuild_replica, (self.kind, self.litestream_type, self.path, dict(self._options), self.name, self.refs))

    def _key(self) -> tuple[Any, ...]:
        return (self.kind, self.litestream_type, self.path, self._options, self.name, self.refs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Replica) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self._options)
        named = f", name={self.name!r}" if self.name is not None else ""
        return f"Replica(kind={self.kind!r}, litestream_type={self.litestream_type!r}, path={self.path!r}{options}{named})"

    def renamed(self, name: str, refs: tuple[tuple[str, str], ...] = ()) -> Replica:
        """This replica under its own ``name`` in the config, with credentials of its own (``refs``)."""
        return Replica(self.kind, self.litestream_type, self.path, name=name, refs=refs, **dict(self._options))

    @property
    def config_name(self) -> str:
        """Its name in a 0.3 config: what ``litestream ... -replica NAME`` takes."""
        return self.name or self.kind

    @property
    def spec(self) -> ReplicaKind:
        return _BY_NAME[self.kind]

    @property
    def destination(self) -> str:
        """A human-readable, secret-free name of where the backup lives (locks use ``lock_key``)."""
        return self.spec.destination(self)

    @property
    def lock_key(self) -> str:
        """The replica's location normalised, so two spellings of one place get one key (and one lock).

        A folder is its real path (``..`` and symlinks resolved); an S3-style endpoint has its scheme
        and host in lower case, default ports and trailing slashes dropped; paths lose empty segments.
        """
        return self.spec.lock_key(self)


def _rebuild_replica(
    kind: str,
    litestream_type: str,
    path: str,
    options: dict[str, Any],
    name: str | None = None,
    refs: tuple[tuple[str, str], ...] = (),
) -> Replica:
    return Replica(kind, litestream_type, path, name=name, refs=refs, **options)


def clean_path(path: str) -> str:
    """A remote path without empty or '.' segments."""
    return "/".join(part for part in path.split("/") if part and part != ".")


def check_remote_path(checking: Checking, variable: str, raw: str | None, databases: int) -> None:
    """A replica path setting (``BACKUP_PATH``, ``BACKUP_SECONDARY_PATH``): relative, where the backup
    goes inside the bucket (or the sftp login folder), with ``{name}`` when there are several databases."""
    if raw is None:
        return
    prefix = raw.strip("/")
    if not prefix:
        checking.add(variable, "is only slashes", "write a prefix like backups/{name}, or leave it unset")
    elif raw.startswith("/"):
        # Dropping the slash (as before) would quietly turn /etc/passwd into a bucket key etc/passwd:
        # whoever wrote an absolute path meant something else, so say what a replica path is instead.
        checking.add(
            variable,
            f"{raw!r} is an absolute path, but a replica path is relative: where the backup goes "
            "inside the bucket (or the sftp login folder), not a path on this machine",
            "write it without the leading '/', like backups/{name}",
        )
    elif any(part in (".", "..") for part in prefix.split("/")):
        checking.add(
            variable,
            f"{prefix!r} has a '.' or '..' segment: object stores take it literally or reject every upload (400)",
            "write a plain prefix like backups/{name}",
        )
    elif databases > 1 and "{name}" not in prefix:
        checking.add(
            variable,
            f"{prefix!r} would put {databases} databases in one replica path",
            "include {name} in it, like backups/{name}, so each database gets its own",
        )


def split_host_port(text: str, default_port: int) -> tuple[str, int] | None:
    """``host``, ``host:port`` or ``[v6]:port`` as (host, port); None for a port that is not a number."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", str(default_port))
    try:
        return (host.strip("[]"), int(port or default_port))
    except ValueError:
        return None


def resolve(value: str, base: Path) -> Path:
    """A path from the settings: ``~`` expanded, relative to the project folder."""
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).absolute()


class ReplicaKind:
    """One replica kind. Subclasses set the class attributes and override what they can do."""

    name: ClassVar[str]
    litestream_type: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()  # other spellings accepted in BACKUP_REPLICA
    # setting -> the variables that may provide it, first set wins (merged into settings.CHAINS)
    variables: ClassVar[dict[str, tuple[str, ...]]] = {}
    secrets: ClassVar[frozenset[str]] = frozenset()  # settings whose values are secrets
    masked: ClassVar[frozenset[str]] = frozenset()  # not secret alone, still shown masked
    options: ClassVar[tuple[str, ...]] = ()  # the Replica fields of this kind
    needs_bucket: ClassVar[bool] = False
    local_folder: ClassVar[bool] = False  # a folder on this machine: checked and listed as files, no endpoint
    uses_s3_client: ClassVar[bool] = False  # AWS_CA_BUNDLE and friends matter to its litestream
    # Variables of backupctl's own never passed to litestream: with the reason said (name -> why),
    # and silently (secrets litestream gets under the names it reads).
    dropped_variables: ClassVar[dict[str, str]] = {}
    withheld_variables: ClassVar[tuple[str, ...]] = ()
    # BACKUP_REPLICA unset: the kind with the lowest rank whose implying setting is set (None: always).
    implied_rank: ClassVar[int | None] = None
    implied_by: ClassVar[str | None] = None
    prices: ClassVar[Prices | None] = None  # `cost` prices every replica on each kind that has prices

    @property
    def template(self) -> str:
        """Its template, included by the main one for each replica of this kind."""
        return f"replica/{self.name}.j2"

    def type_for(self, caps: Capabilities) -> str:
        """What this litestream version's config calls the kind."""
        return self.litestream_type

    def check(self, checking: Checking) -> None:
        """Add a problem for each of its settings that litestream could not use (called once per kind in use)."""

    def check_values(self, checking: Checking) -> None:
        """Checks of a value's form that apply even when the kind is not in use (called for every kind)."""

    def replica(
        self, name: str, remote_path: str, values: Mapping[str, str | None], local_dir: Path, caps: Capabilities
    ) -> Replica:
        """The replica of database file ``name``; ``values`` are the validated settings."""
        raise NotImplementedError

    def destination(self, replica: Replica) -> str:
        raise NotImplementedError

    def lock_key(self, replica: Replica) -> str:
        raise NotImplementedError

    def template_values(self, replica: Replica) -> dict[str, Any]:
        """What its template prints beside ``kind``, ``type`` and ``path``."""
        return {}

    def environment(self, settings: Settings) -> dict[str, str]:
        """Variables litestream reads its credentials from (the only way secrets reach it)."""
        return {}

    def address(self, replica: Replica) -> tuple[str, int] | None:
        """The (host, port) it connects to, to test before a slow litestream call; None: nothing to test."""
        return None

    def probe(
        self,
        settings: Settings,
        replica: Replica,
        server_dates: list[tuple[float, float]],
        clean: Callable[[str], str],
    ) -> Check:
        """`doctor`'s check that the replica can be written to (``server_dates``: the servers' Date headers)."""

        return Check(
            "replica access",
            INFO,
            f"{replica.kind} replicas are not probed by doctor",
            "run `backupctl verify` to prove the replica restores",
            subject=replica.destination,
            finding="replica-not-probed",
        )

    def list_objects(self, settings: Settings, replica: Replica) -> list[StoredObject] | None:
        """Every object the replica holds (for `cost`); None: this kind is not listed."""
        return None

