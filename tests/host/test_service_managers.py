"""Which service manager runs a supervisor, and the command that stops it there."""

from __future__ import annotations

from backupctl.host import service_managers


def test_service_manager_is_read_from_the_environment() -> None:
    assert service_managers.service_manager({}) in (None, "a container")
    assert service_managers.service_manager({"INVOCATION_ID": "x"}).startswith("systemd")
    assert service_managers.service_manager({"XPC_SERVICE_NAME": "com.example.backup"}) == "launchd job com.example.backup"
    assert service_managers.manager_stop_hint("systemd user unit backupctl-app.service") == (
        "systemctl --user stop backupctl-app.service"
    )


def test_a_system_unit_is_stopped_with_sudo_unless_by_root() -> None:
    manager = "systemd unit backupctl-app.service"
    assert service_managers.manager_stop_hint(manager, euid=1000) == "sudo systemctl stop backupctl-app.service"
    assert service_managers.manager_stop_hint(manager, euid=0) == "systemctl stop backupctl-app.service"
