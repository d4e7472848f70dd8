"""Service definitions that run `backupctl start` (or `backupctl serve`) in the foreground under a process manager.

Rendered from ``templates/service/*.j2`` through Jinja with a ``finalize`` hook per format, so
every value a template prints is quoted for that format whether or not the template author
remembered to: systemd (``%`` and ``$`` doubled, arguments double-quoted with C escapes),
launchd (XML-escaped), docker-compose (YAML double-quoted, ``$`` doubled against compose's
interpolation), Procfile (POSIX shell quoting). A value with a newline or other control
character is refused: no format can carry one safely.

Every definition carries what the `.env` may not say but the service needs (``carried_environment``):
the pinned Litestream version and ``BACKUPCTL_LITESTREAM_BIN``, which backupctl reads from the
process environment only, and which no service manager passes on from the shell that generated it.
"""

from __future__ import annotations

import glob
import json
import os
import posixpath
import pwd
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

from backupctl import __version__
from backupctl.config.render import default_templates_dir
from backupctl.config.settings import Settings
from backupctl.errors import ConfigError, RefusedError
from backupctl.kinds.base import resolve
from backupctl.litestream.binary import ALLOW_MISMATCH_ENV, USER_BIN_ENV
from backupctl.owned import write_atomic
from backupctl.paths import project_state_dir
from backupctl.supervise.supervisor import stop_timeout_seconds

KINDS = ("systemd", "launchd", "compose", "procfile")
COMMANDS = ("start", "serve")  # the supervisor; the HTTP status server (a process of its own, next to it)
_TEMPLATES = {
    "systemd": "systemd.service.j2",
    "launchd": "launchd.plist.j2",
    "compose": "compose.yml.j2",
    "procfile": "Procfile.j2",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
STOP_MARGIN = 15.0  # the process manager waits this much longer than the supervisor's own stop timeout

# The image (Dockerfile) and the compose service must agree on these; tests/commands/test_service_files.py
# reads the Dockerfile and fails when one of them moves without the other.
IMAGE_UID = 1000  # the Dockerfile's BACKUPCTL_UID/BACKUPCTL_GID: the `rails` user of Rails 8 images
IMAGE_GID = 1000
# Timing of the container healthcheck (`backupctl status --json`: answered from the supervisor's published
# look without loading the settings, docs/status.md; its JSON is what `docker inspect` keeps). start_period:
# on a new machine every database is restored from the replica before the first status can pass; failures
# before then don't count.
HEALTHCHECK = {"interval": "60s", "timeout": "30s", "start_period": "120s", "retries": 3}
HEALTHCHECK_ARGV = ["backupctl", "status", "--json"]  # the Dockerfile's HEALTHCHECK CMD too

# The container's layout (docs/containers.md). /data is the image's WORKDIR: the .env is mounted there
# read-only and backupctl writes litestream.yml beside it. The databases are under /data/storage, as
# they are under /rails/storage in a Rails (Campfire, Kamal) app container sharing the same volume.
# The image creates each of these folders owned by its user: an empty named volume mounted on one
# takes that owner, so the container can write to it (a folder Docker creates itself belongs to root).
CONTAINER_DIR = "/data"
CONTAINER_DATA = "/data/storage"
CONTAINER_STATE = "/state"  # logs, last verify and drill, process records: kept across container restarts
CONTAINER_REPLICA = "/replica"  # a local-folder replica (BACKUP_REPLICA=file)
CONTAINER_LITESTREAM = "/opt/backupctl/litestream"  # BACKUPCTL_LITESTREAM_BIN, mounted read-only
DEFAULT_DATA_VOLUME = "storage"  # merged with the app's own `storage` volume by `docker compose -f app -f this`
STATE_VOLUME = "backupctl-state"
SYSTEMD_SYSTEM_DIR = Path("/etc/systemd/system")

_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # the compose spec's volume key
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]*[$]?|[0-9]+")  # what useradd and systemd's User= take
_UID_GID = re.compile(r"([0-9]+):([0-9]+)")


class Quoted(str):
    """Already quoted for the output format by a filter: finalize leaves it alone."""


@dataclass(frozen=True)
class RenderedService:
    kind: str
    text: str
    name: str  # unit / label / service name derived from the project folder
    system: bool = False  # a systemd system unit (installed in /etc/systemd/system, as root)


@dataclass(frozen=True)
class Mount:
    """One compose volume entry (long syntax: a path with ':' in it stays one path)."""

    type: str  # "bind" or "volume"
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ComposeLayout:
    mounts: list[Mount]
    environment: dict[str, str]
    volumes: list[str]  # named volumes to declare at the top level
    notes: list[str] = field(default_factory=list)  # comments for what the file cannot do itself


def _check(value: object) -> str:
    text = str(value)
    if _CONTROL.search(text):
        raise ConfigError(
            f"{text!r} contains a newline or control character and cannot go into a service definition",
            "rename the folder or file so that its path has no control characters",
        )
    return text


def _systemd_value(value: object) -> str:
    return _check(value).replace("%", "%%")


def _systemd_arg(value: object) -> str:
    text = _systemd_value(value).replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return f'"{text}"'


def _systemd_assignment(item: tuple[str, str]) -> str:
    """One Environment= assignment, double-quoted: systemd takes C escapes and specifiers there, not $."""
    text = _systemd_value(f"{item[0]}={item[1]}").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _compose_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(_check(value), ensure_ascii=False).replace("$", "$$")


_FINALIZE: dict[str, Callable[[object], str]] = {
    "systemd": _systemd_value,
    "launchd": lambda v: xml_escape(_check(v)),
    "compose": _compose_scalar,
    "procfile": lambda v: shlex.quote(_check(v)),
}
_ARGV_FILTERS: dict[str, Callable[[list[str]], str]] = {
    "systemd": lambda argv: " ".join(_systemd_arg(a) for a in argv),
    "launchd": lambda argv: "\n".join(f"    <string>{xml_escape(_check(a))}</string>" for a in argv),
    "compose": lambda argv: "[" + ", ".join(_compose_scalar(a) for a in argv) + "]",
    "procfile": lambda argv: " ".join(shlex.quote(_check(a)) for a in argv),
}


def backupctl_command() -> list[str]:
    """The absolute command that runs this backupctl (the venv's script, else python -m backupctl)."""
    script = Path(sys.executable).parent / "backupctl"
    if script.is_file():
        return [str(script)]
    found = shutil.which("backupctl")
    if found:
        return [str(Path(found).absolute())]
    return [sys.executable, "-m", "backupctl"]


def service_name(settings: Settings) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", settings.project_dir.name).strip("-.") or "project"
    return f"backupctl-{slug}"


def _finalize_for(kind: str) -> Callable[[object], str]:
    base = _FINALIZE[kind]

    def finalize(value: object) -> str:
        if isinstance(value, Quoted):
            return str(value)
        return base(value)

    return finalize


def image_source() -> Path | None:
    """The backupctl checkout holding the Dockerfile this backupctl was installed from, if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "Dockerfile").is_file() and (root / "pyproject.toml").is_file() else None


def default_image(settings: Settings, uid_gid: tuple[int, int] = (IMAGE_UID, IMAGE_GID)) -> str:
    """The tag `service compose` builds (or expects): backupctl's and the pinned Litestream's versions
    (and the user's uid/gid when they are not the image's default, so the two builds never share a tag)."""

    user = "" if uid_gid == (IMAGE_UID, IMAGE_GID) else f"-uid{uid_gid[0]}-gid{uid_gid[1]}"
    return f"backupctl:{__version__}-litestream-{settings.version}{user}"


def carried_environment(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What every definition sets in its process's environment, beyond the .env.

    LITESTREAM_VERSION: the version this definition was made for. Without it a service follows the
    .env, else backupctl's default pin, which an upgrade of backupctl can move: a replica written by
    0.3 is unreadable to 0.5. (The environment overrides the .env: regenerate after changing it.)
    BACKUPCTL_LITESTREAM_BIN (and BACKUPCTL_ALLOW_VERSION_MISMATCH, which only matters with it): read
    from the process environment only, so a service started by systemd, launchd or a Procfile
    manager would silently run the pinned download instead of the binary the user chose.
    """

    env = os.environ if environ is None else environ
    carried = {"LITESTREAM_VERSION": settings.version}
    raw = env.get(USER_BIN_ENV)
    if raw:
        carried[USER_BIN_ENV] = str(Path(raw).expanduser().absolute())  # as backupctl reads it here, now
        if env.get(ALLOW_MISMATCH_ENV):
            carried[ALLOW_MISMATCH_ENV] = env[ALLOW_MISMATCH_ENV]
    return carried


def check_user_name(name: str) -> str:
    if not _USER_NAME.fullmatch(name) or len(name) > 32:
        raise ConfigError(f"{name!r} is not a user name", "name the account the service runs as, like --user-name deploy")
    if name == "nobody":
        # systemd-analyze verify flags it ("Special user nobody configured, this is not safe!"), and
        # nobody cannot own the project's .env and state that the unit reads and writes.
        raise ConfigError(
            "'nobody' is systemd's special user: systemd calls a unit running as it unsafe, and it cannot own the project",
            "name the account that owns the project and its .env, like --user-name deploy",
        )
    return name


def parse_uid_gid(text: str) -> tuple[int, int]:
    match = _UID_GID.fullmatch(text.strip())
    if not match:
        raise ConfigError(f"{text!r} is not UID:GID", f"write numbers, like {IMAGE_UID}:{IMAGE_GID}")
    return int(match.group(1)), int(match.group(2))


def _database_patterns(settings: Settings) -> list[tuple[str, str]]:
    """(as written in BACKUP_DATABASES, absolute and normalized) for each entry, globs kept as globs."""

    raw = settings.values.get("databases") or ""
    items = [s.strip() for s in raw.split(",") if s.strip()]
    return [(item, os.path.normpath(resolve(item, settings.project_dir))) for item in items]


def _fixed_folder(pattern: str) -> str:
    """The deepest folder of ``pattern`` with no glob character in it."""
    parts = Path(pattern).parent.parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "/"


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _source(path: str, project_dir: str) -> str:
    """A bind mount's host path: relative (./…) inside the project, where the compose file is saved; else absolute."""
    if _inside(path, project_dir):
        rel = os.path.relpath(path, project_dir)
        return "." if rel == "." else f"./{rel}"
    return path


def data_root(settings: Settings) -> str:
    """The project's folder that a named data volume stands for (it is mounted at /data/storage).

    The top folder of the databases inside the project (``storage`` for Rails 8's ``storage/production.sqlite3``
    and Campfire's ``storage/db/production.sqlite3``),
    as Rails apps, Campfire and Kamal mount their volume at ``/rails/storage``: mounting the same volume
    at the database's own folder (``storage/db``) would show the sidecar other files than the app.
    Databases outside the project, or not all under one top folder: their common folder.
    """
    project = os.path.normpath(settings.project_dir)
    folders = [_fixed_folder(p) for _, p in _database_patterns(settings)]
    if not folders:  # settings always name a database; an empty list is no layout to guess
        return project
    if all(_inside(f, project) and f != project for f in folders):
        tops = {os.path.relpath(f, project).split(os.sep)[0] for f in folders}
        if len(tops) == 1:
            return os.path.join(project, tops.pop())
    return os.path.commonpath(folders)


def compose_layout(settings: Settings, data: str | None = None, environ: Mapping[str, str] | None = None) -> ComposeLayout:
    """The compose service's mounts and environment: the .env (read-only), the data, nothing else of the project.

    ``data``: a named volume (a bare name) or a host folder (a path: ``./storage``, ``/srv/app/storage``,
    relative to the current folder) that holds the databases; default: the named volume ``storage``
    standing for ``data_root``. BACKUP_DATABASES is set to the databases' paths inside the container, so
    that the .env's paths (relative, absolute or globs) need not match the container's layout.
    """
    project = os.path.normpath(settings.project_dir)
    spec = data or DEFAULT_DATA_VOLUME
    is_path = spec.startswith(("/", ".", "~")) or "/" in spec
    if is_path:
        root = os.path.normpath(Path(spec).expanduser().absolute())
    elif _VOLUME_NAME.fullmatch(spec):
        root = data_root(settings)
    else:
        raise ConfigError(
            f"--data {spec!r} is neither a volume name nor a path",
            "name a volume with letters, digits, '_', '.' and '-' (like storage), or a folder as a path (like ./storage)",
        )
    mounts: list[Mount] = []
    env = dict(carried_environment(settings, environ))
    notes: list[str] = []
    if settings.env_file is not None:
        mounts.append(Mount("bind", _source(os.path.normpath(settings.env_file), project), f"{CONTAINER_DIR}/.env", True))
    else:
        notes.append("No .env: set backupctl's variables under `environment:` (they came from the environment here).")
    mounts.append(Mount("bind", _source(root, project), CONTAINER_DATA) if is_path else Mount("volume", spec, CONTAINER_DATA))
    mounts.append(Mount("volume", STATE_VOLUME, CONTAINER_STATE))

    inside = []
    for item, pattern in _database_patterns(settings):
        if not _inside(pattern, root):
            raise ConfigError(
                f"the database {item!r} ({pattern}) is not inside the data folder {root}",
                "pass --data the folder (or volume) that holds every database of BACKUP_DATABASES",
            )
        inside.append(posixpath.join(CONTAINER_DATA, *Path(os.path.relpath(pattern, root)).parts))
    env["BACKUP_DATABASES"] = ",".join(inside)


    if USER_BIN_ENV in env:  # the user's binary, at a path of the container's own
        mounts.append(Mount("bind", _source(env[USER_BIN_ENV], project), CONTAINER_LITESTREAM, True))
        env[USER_BIN_ENV] = CONTAINER_LITESTREAM
    if "file" in settings.replica_kinds:  # a local-folder replica must be there too
        mounts.append(Mount("bind", _source(os.path.normpath(settings.local_dir), project), CONTAINER_REPLICA))
        env["BACKUP_LOCAL_DIR"] = CONTAINER_REPLICA
    env["BACKUPCTL_STATE_DIR"] = f"{CONTAINER_STATE}/project"
    env["BACKUPCTL_HOME"] = f"{CONTAINER_STATE}/home"  # locks and process records, shared with a serve container
    for setting, variable in (("sftp_key_path", "BACKUP_SFTP_KEY_PATH"), ("gs_credentials_file", "BACKUP_GS_CREDENTIALS_FILE")):
        if settings.values.get(setting):
            notes.append(f"{variable} names a file on this machine: mount it read-only and set {variable} under `environment:`.")
    volumes = ([] if is_path else [spec]) + [STATE_VOLUME]
    return ComposeLayout(mounts, env, volumes, notes)


def render_service(
    kind: str,
    settings: Settings,
    image: str | None = None,
    command: str = "start",
    *,
    system_user: str | None = None,
    data: str | None = None,
    container_user: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> RenderedService:
    """Render one service definition for the project's settings: ``command`` start (replication) or serve.

    systemd: a user unit, or with ``system_user`` a system unit running as that user.
    compose: without ``image``, the service builds the repository's Dockerfile (from this
    backupctl's checkout, relative to the project, with the project's Litestream version) and tags
    it ``default_image``; with ``image``, it runs that image as it is. ``data`` and
    ``container_user``: see ``compose_layout`` and ``parse_uid_gid``.
    """
    import jinja2


    if kind not in KINDS:
        raise ConfigError(f"unknown service kind {kind!r}", f"use one of {', '.join(KINDS)}")
    if command not in COMMANDS:
        raise ConfigError(f"unknown service command {command!r}", f"use one of {', '.join(COMMANDS)}")
    if system_user is not None:
        check_user_name(system_user)
    uid_gid = parse_uid_gid(container_user) if container_user else (IMAGE_UID, IMAGE_GID)
    argv = [*backupctl_command(), command]
    if settings.env_file:
        argv += ["--env-file", str(settings.env_file)]
    stop_timeout = stop_timeout_seconds(settings)
    name = service_name(settings) + ("-serve" if command == "serve" else "")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(default_templates_dir() / "service")),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize_for(kind),
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["argv"] = lambda a: Quoted(_ARGV_FILTERS[kind](a))
    # backupctl's own words and names it checked (comments, YAML keys): printed as they are
    env.filters["ours"] = lambda text: Quoted(_check(text))
    env.filters["systemd_env"] = lambda items: Quoted(" ".join(_systemd_assignment(i) for i in items))
    carried = carried_environment(settings, environ)
    context: dict[str, object] = {
        "name": name,
        "project_dir": str(settings.project_dir),
        "argv": argv,
        "command": command,
        "environment": carried,
        "stop_timeout": int(stop_timeout),
        "manager_timeout": int(stop_timeout + STOP_MARGIN),
        "log_path": str(project_state_dir(settings.project_dir) / ("launchd-serve.log" if command == "serve" else "launchd.log")),
        "system_user": system_user,
        "install_command": install_command(command, system_user),
    }
    if kind == "procfile":
        context["procfile_argv"] = procfile_argv(settings, command, carried)
    if kind == "compose":
        source = image_source() if image is None else None
        context.update(
            layout=compose_layout(settings, data, environ),
            # The image's own CMD, and for serve a command of its own; the .env is found in /data, the working folder.
            compose_argv=["backupctl", command, *(["--restore-if-missing"] if command == "start" else [])],
            status_argv=["CMD", *HEALTHCHECK_ARGV],
            image=image or default_image(settings, uid_gid),
            build_context=os.path.relpath(source, settings.project_dir) if source else None,
            build_hint=image is None and source is None,
            litestream_version=settings.version,
            user=f"{uid_gid[0]}:{uid_gid[1]}",
            uid=uid_gid[0],
            gid=uid_gid[1],
            container_dir=CONTAINER_DIR,
            healthcheck=HEALTHCHECK,
        )
    try:
        text = env.get_template(_TEMPLATES[kind]).render(context)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"service template {_TEMPLATES[kind]}: {exc}", "reinstall backupctl") from None
    return RenderedService(kind, text, name, system=system_user is not None)


def procfile_argv(settings: Settings, command: str, carried: Mapping[str, str]) -> list[str]:
    """`env VAR=… backupctl COMMAND --env-file .env`: backupctl from PATH and the .env relative to the
    Procfile's folder (the project's), so the line holds no path of this machine and can be committed."""

    project = os.path.normpath(settings.project_dir)
    assignments = []
    for key, value in carried.items():
        if key == USER_BIN_ENV and _inside(value, project):
            value = os.path.relpath(value, project)  # the processes run in the Procfile's folder
        assignments.append(f"{key}={value}")
    argv = ["env", *assignments, "backupctl", command]
    if settings.env_file:
        argv += ["--env-file", os.path.relpath(settings.env_file, project)]
    return argv


def install_command(command: str, system_user: str | None) -> str:
    """The backupctl command that installs this very unit (named in its header comment)."""
    words = ["backupctl", "service", "systemd"]
    if system_user is not None:
        words += ["--system", "--user-name", system_user]
    if command == "serve":
        words.append("--serve")
    return " ".join([*words, "--install"])


def systemd_user_dir() -> Path:
    return Path.home() / ".config" / "systemd" / "user"


def systemd_unit_path(rendered: RenderedService) -> Path:
    folder = SYSTEMD_SYSTEM_DIR if rendered.system else systemd_user_dir()
    return folder / f"{rendered.name}.service"


def install_systemd_unit(rendered: RenderedService, print_command: list[str] | None = None, euid: int | None = None) -> Path:
    """Write the unit (atomically): a user unit to ~/.config/systemd/user/, a system unit to /etc/systemd/system/.

    A system unit needs root. For anyone else it is refused with the command that installs it:
    ``print_command`` (this backupctl printing the unit) piped to ``sudo tee``, so the unit is rendered
    with this user's environment (BACKUPCTL_LITESTREAM_BIN) and only the write happens as root.
    """

    if rendered.kind != "systemd":
        raise ConfigError("only systemd units can be installed", "pass `systemd`")
    path = systemd_unit_path(rendered)
    if rendered.system:
        if (os.geteuid() if euid is None else euid) != 0:
            printing = shlex.join(print_command) if print_command else "backupctl service systemd --system ..."
            raise RefusedError(
                f"writing {path} needs root",
                f"run: {printing} | sudo tee {shlex.quote(str(path))} > /dev/null",
            )
        user = _unit_user(rendered.text)
        try:
            pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
        except KeyError:
            raise ConfigError(
                f"there is no user {user!r} on this machine: the unit would fail to start (status 217/USER)",
                "create the account first (useradd), or pass the --user-name of an existing one",
            ) from None
    write_atomic(path, rendered.text, mode=0o644)
    return path


def _unit_user(text: str) -> str:
    return next(line.partition("=")[2] for line in text.splitlines() if line.startswith("User="))
