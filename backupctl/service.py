"""Service definitions that run `backupctl start` (or `backupctl serve`) in the foreground under a process manager.

Rendered from ``templates/service/*.j2`` through Jinja with a ``finalize`` hook per format, so
every value a template prints is quoted for that format whether or not the template author
remembered to: systemd (``%`` and ``$`` doubled, arguments double-quoted with C escapes),
launchd (XML-escaped), docker-compose (YAML double-quoted, ``$`` doubled against compose's
interpolation), Procfile (POSIX shell quoting). A value with a newline or other control
character is refused: no format can carry one safely.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

from backupctl.errors import ConfigError
from backupctl.settings import Settings

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


class Quoted(str):
    """Already quoted for the output format by a filter: finalize leaves it alone."""


@dataclass(frozen=True)
class RenderedService:
    kind: str
    text: str
    name: str  # unit / label / service name derived from the project folder


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


def _compose_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(_check(value), ensure_ascii=False).replace("$", "$$")


_FINALIZE = {
    "systemd": _systemd_value,
    "launchd": lambda v: xml_escape(_check(v)),
    "compose": _compose_scalar,
    "procfile": lambda v: shlex.quote(_check(v)),
}
_ARGV_FILTERS = {
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


def _finalize_for(kind: str):  # -> Callable[[object], str]
    base = _FINALIZE[kind]

    def finalize(value: object) -> str:
        if isinstance(value, Quoted):
            return str(value)
        return base(value)

    return finalize


def image_source() -> Path | None:
    """The backupctl checkout holding the Dockerfile this backupctl was installed from, if any."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "Dockerfile").is_file() and (root / "pyproject.toml").is_file() else None


def default_image(settings: Settings) -> str:
    """The tag `service compose` builds (or expects): backupctl's and the pinned Litestream's versions."""
    from backupctl import __version__

    return f"backupctl:{__version__}-litestream-{settings.version}"


def render_service(kind: str, settings: Settings, image: str | None = None, command: str = "start") -> RenderedService:
    """Render one service definition for the project's settings: ``command`` start (replication) or serve.

    compose: without ``image``, the service builds the repository's Dockerfile (from this
    backupctl's checkout, with the project's Litestream version) and tags it ``default_image``;
    with ``image``, it runs that image as it is.
    """
    import jinja2

    from backupctl.paths import project_state_dir
    from backupctl.render import default_templates_dir
    from backupctl.supervisor import stop_timeout_seconds

    if kind not in KINDS:
        raise ConfigError(f"unknown service kind {kind!r}", f"use one of {', '.join(KINDS)}")
    if command not in COMMANDS:
        raise ConfigError(f"unknown service command {command!r}", f"use one of {', '.join(COMMANDS)}")
    argv = [*backupctl_command(), command]
    if settings.env_file:
        argv += ["--env-file", str(settings.env_file)]
    stop_timeout = stop_timeout_seconds(settings)
    mounts = {str(settings.project_dir), *(str(db.path.parent) for db in settings.databases)}
    if "file" in settings.replica_kinds:  # a container must see a folder replica too
        mounts.add(str(settings.local_dir))
    mounts = sorted(mounts)
    mounts = [m for m in mounts if not any(m != o and m.startswith(o.rstrip("/") + "/") for o in mounts)]
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
    context = {
        "name": name,
        "project_dir": str(settings.project_dir),
        "env_file": str(settings.env_file) if settings.env_file else None,
        "argv": argv,
        "command": command,
        # The container boot: a new machine gets its databases from the replica, then replicates.
        "compose_argv": ["backupctl", command, *(["--restore-if-missing"] if command == "start" else []),
                         *argv[len(backupctl_command()) + 1 :]],  # fmt: skip
        "status_argv": ["CMD", "backupctl", "status", *argv[len(backupctl_command()) + 1 :]],
        "stop_timeout": int(stop_timeout),
        "manager_timeout": int(stop_timeout + STOP_MARGIN),
        "log_path": str(project_state_dir(settings.project_dir) / ("launchd-serve.log" if command == "serve" else "launchd.log")),
        "mounts": mounts,
        "image": image or default_image(settings),
        "build_context": str(image_source()) if image is None and image_source() else None,
        "build_hint": image is None and image_source() is None,
        "litestream_version": settings.version,
        "home": str(Path.home()),
    }
    try:
        text = env.get_template(_TEMPLATES[kind]).render(context)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"service template {_TEMPLATES[kind]}: {exc}", "reinstall backupctl") from None
    return RenderedService(kind, text, name)


def systemd_user_dir() -> Path:
    return Path.home() / ".config" / "systemd" / "user"


def install_systemd_user_unit(rendered: RenderedService) -> Path:
    """Write the unit to ~/.config/systemd/user/<name>.service (atomically)."""
    from backupctl.owned import write_atomic

    if rendered.kind != "systemd":
        raise ConfigError("only systemd units can be installed", "pass `systemd`")
    path = systemd_user_dir() / f"{rendered.name}.service"
    write_atomic(path, rendered.text, mode=0o644)
    return path
