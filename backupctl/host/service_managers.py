"""Which service manager runs a process (systemd, launchd, a container), and how to stop it there.

A supervisor records the answer (``ProcessRecord.manager``) when it starts: `stop` then refuses
to stop one a manager would start again (or count as failed) and names the command that stops
it there (:func:`manager_stop_hint`); `status` and `doctor` say who runs it.
"""

from __future__ import annotations

import os
from pathlib import Path


def service_manager(environ: dict[str, str] | None = None, pid: int | None = None) -> str | None:
    """Which service manager runs this process, as a name `stop` can point at (None: a terminal or a script).

    systemd gives its services INVOCATION_ID, launchd its jobs XPC_SERVICE_NAME; both also leak
    into terminals started by them (a desktop's terminal app), so a process with a terminal is
    never taken for a service.
    """
    env = os.environ if environ is None else environ
    if _on_a_terminal():
        return None
    if env.get("INVOCATION_ID"):
        unit = _systemd_unit(pid or os.getpid())
        user = "/user@" in _cgroup(pid or os.getpid())
        return (f"systemd user unit {unit}" if user else f"systemd unit {unit}") if unit else "systemd"
    if env.get("XPC_SERVICE_NAME") and env.get("XPC_SERVICE_NAME") != "0":
        return f"launchd job {env['XPC_SERVICE_NAME']}"
    in_container = Path("/.dockerenv").exists() or bool(env.get("container"))
    if in_container and (os.getpid() == 1 or (os.getppid() == 1 and _name(1) in CONTAINER_INITS)):
        return "a container"  # its main process (or right under its init): the container's restart policy rules
    return None


def _on_a_terminal() -> bool:
    try:
        return any(os.isatty(fd) for fd in (0, 1, 2))
    except OSError:
        return False


CONTAINER_INITS = ("tini", "docker-init", "dumb-init", "catatonit")


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text("utf-8").strip()
    except OSError:
        return ""


def manager_stop_hint(manager: str, euid: int | None = None) -> str:
    if manager.startswith("systemd user unit "):
        return f"systemctl --user stop {manager.removeprefix('systemd user unit ')}"
    if manager.startswith("systemd unit "):
        # A system unit (`service systemd --system`) runs as its User=, but only root may stop it.
        sudo = "" if (os.geteuid() if euid is None else euid) == 0 else "sudo "
        return f"{sudo}systemctl stop {manager.removeprefix('systemd unit ')}"
    if manager.startswith("launchd job "):
        return f"launchctl stop {manager.removeprefix('launchd job ')}"
    if manager == "a container":
        return "docker compose stop, or stop the container"
    return f"stop it through {manager}"


def _cgroup(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text("utf-8")
    except OSError:
        return ""


def _systemd_unit(pid: int) -> str | None:
    for line in _cgroup(pid).splitlines():
        for part in reversed(line.rsplit(":", 1)[-1].split("/")):
            if part.endswith(".service"):
                return part
    return None
