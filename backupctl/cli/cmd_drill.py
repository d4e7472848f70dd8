"""`drill`: a thin skin over backupctl.checks.drill."""

from __future__ import annotations

from typing import Annotated

import typer

from backupctl import paths
from backupctl.cli.app import app
from backupctl.cli.common import DURATION, EnvFileOpt, JsonOpt, binary_for, load_for_recovery, replica_option
from backupctl.cli.output import emit_json, notice, print_table, say, success
from backupctl.display import shown
from backupctl.units import human_size


@app.command()
def drill(
    timeout: Annotated[
        float,
        typer.Option("--timeout", click_type=DURATION, help="Give up on one database's download after this long: 30m, 90s."),
    ] = 1800.0,
    replica: Annotated[
        str | None,
        replica_option("the replica holding the newest backup, as litestream picks it, and every replica proven whole "
                       "against the live database where there is one"),  # fmt: skip
    ] = None,
    json_out: JsonOpt = False,
    env_file: EnvFileOpt = None,
) -> int:
    """Recovery drill: restore every database into a temp folder, check it, and measure RPO and RTO.

    Each database is restored from its replica, checked (PRAGMA integrity_check) and its tables'
    row counts compared with the live database where one exists; then everything is removed.
    RPO: age of the newest restorable state. RTO: how long the full restore took.
    Exit 0 passed, 22 failed. The last result is kept in .backupctl/drill.json.
    """
    # lazy: each command loads only what it runs
    from backupctl.checks import drill as core
    from backupctl.cli.cmd_restore import _signals_stop, _status, _step

    settings = load_for_recovery(env_file, replica=replica)
    binary = binary_for(settings)
    with _signals_stop("drill"), _status("recovery drill", json_out) as status:
        step = _step(status)
        result = core.run_drill(settings, binary, timeout=timeout, on_step=step)
    core.record(paths.project_state_dir(settings.project_dir), result)
    if json_out:
        emit_json({"ok": result.status == core.PASSED, **result.to_json()})
    else:
        from rich.table import Table


        columns = ["database", "result", "size", "restore", "newest state", "RPO", "tables"]
        t = Table(title="recovery drill")
        for column in columns:
            t.add_column(column, justify="right" if column in ("size", "restore", "RPO", "tables") else "left")
        rows = [
            [
                shown(d.name),
                d.status,
                human_size(d.size),
                f"{d.restore_seconds:.2f}s" if d.restore_seconds is not None else "-",
                d.state_at or "unknown",
                f"{d.rpo_seconds:.0f}s" if d.rpo_seconds is not None else "-",
                str(len(d.tables)),
            ]
            for d in result.databases
        ]
        for row in rows:
            t.add_row(*row)
        print_table(columns, rows, title="recovery drill", terminal=t)
        for d in result.databases:
            say(f"{d.name}: {d.reason}")
            for note in d.notes:
                notice(f"{d.name}: {note}")
        if result.status == core.PASSED:
            success(result.summary())
        else:
            say(result.summary())
    if result.exit_code:
        raise typer.Exit(int(result.exit_code))
    return 0
