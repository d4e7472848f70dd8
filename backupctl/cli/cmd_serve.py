"""serve: the status report over HTTP (/healthz, /metrics, a status page). See docs/monitoring.md."""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from backupctl.cli.app import app
from backupctl.cli.common import EnvFileOpt, binary_for, load
from backupctl.cli.output import log_line as _stderr_log
from backupctl.cli.output import say, success
from backupctl.errors import ExitCode


@app.command()
def serve(
    env_file: EnvFileOpt = None,
    addr: Annotated[
        str | None,
        typer.Option(
            "--addr",
            help="HOST:PORT to listen on (default: BACKUP_HTTP_ADDR, else 127.0.0.1:9091). "
            "Beyond loopback BACKUP_HTTP_TOKEN is required.",
            show_default=False,
        ),
    ] = None,
    request_deadline: Annotated[
        float | None,
        # Hidden, for tests only (tests/serve/test_serve_hardening.py): a slow client is cut off after this
        # many seconds instead of serve.REQUEST_DEADLINE (10 s), so the test need not wait that long.
        typer.Option("--request-deadline", hidden=True, min=0.1, max=600.0),
    ] = None,
) -> int:
    """Serve /healthz, /metrics (Prometheus) and a status page, refreshed every sync interval (at most 15s).

    Runs in the foreground until Ctrl-C (exit 130) or SIGTERM (exit 143). Refuses to listen beyond
    loopback without BACKUP_HTTP_TOKEN (exit 3); a port in use exits 6. Notifies BACKUP_NOTIFY_URL /
    BACKUP_NOTIFY_FAIL_URL on every change of verdict.
    """
    import threading

    # lazy: each command loads only what it runs
    from backupctl.serve.server import bind_address, check_exposure, run

    settings = load(env_file)
    bind, source = bind_address(settings, addr)
    check_exposure(bind, settings.credentials.http_token, source)  # before anything slow: a refusal is immediate
    binary = binary_for(settings)

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def ready(bound, interval: float) -> None:  # noqa: ANN001 - serve.BindAddress
        success(f"serving the backup status of {settings.project_dir} on {bound.url}/ (/healthz, /metrics)")
        say(
            f"refreshing every {interval:g}s"
            + ("; a token is required (BACKUP_HTTP_TOKEN)" if settings.credentials.http_token else "")
            + "; stop with Ctrl-C"
        )

    try:
        run(
            settings,
            binary,
            bind,
            addr_source=source,
            log=_stderr_log,
            stop=stop,
            on_ready=ready,
            request_deadline=request_deadline,
        )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise typer.Exit(int(ExitCode.INTERRUPTED if received[0] == signal.SIGINT else ExitCode.TERMINATED))
    return 0
