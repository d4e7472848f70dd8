"""doctor and cost: what is wrong and how to fix it; what the replica will cost."""

from __future__ import annotations

from typing import Annotated

import typer

from backupctl.cli.app import app
from backupctl.cli.common import EnvFileOpt, JsonOpt, load
from backupctl.cli.output import emit_json, print_table, say
from backupctl.display import shown

_MARKS = {"ok": ("ok", "green"), "info": ("info", "blue"), "warn": ("WARN", "yellow"), "fail": ("FAIL", "bold red")}


@app.command()
def doctor(env_file: EnvFileOpt = None, json_: JsonOpt = False) -> int:
    """Check settings, binary, config, databases, replica access, replicators, disk and clock; say how to fix each.

    Exit code: 0 all ok, 30 warnings only, 31 at least one failed check.
    """
    # lazy: each command loads only what it runs
    from backupctl.checks.doctor import run_doctor

    report = run_doctor(env_file)
    if json_:
        emit_json(report.to_json())
    else:
        from rich.table import Table
        from rich.text import Text

        t = Table(title="backupctl doctor", show_lines=False, expand=False)
        t.add_column("")
        t.add_column("check")
        t.add_column("found / fix", overflow="fold")
        for check in report.checks:
            label, style = _MARKS[check.status]
            body = Text()
            # Escaped piece by piece: the "\nfix:" line break is the table's own, a newline in a path is not.
            if check.subject:
                body.append(shown(check.subject) + ": ", style="bold")
            body.append(shown(check.found))
            if check.fix and check.status in ("warn", "fail", "info"):
                body.append("\nfix: " if check.status != "info" else "\nadvice: ", style="cyan")
                body.append(shown(check.fix))
            t.add_row(Text(label, style=style), check.name, body)
        # Piped: one complete tab-separated line per check (the box above folds and cuts at 80 columns).
        rows = [[check.status, check.name, check.subject or "", check.found, check.fix or ""] for check in report.checks]
        print_table(["status", "check", "subject", "found", "fix"], rows, title="backupctl doctor", terminal=t)
        counts = report.counts()
        say(f"{counts['ok']} ok, {counts['info']} info, {counts['warn']} warning(s), {counts['fail']} failed")
    if report.exit_code:
        raise typer.Exit(int(report.exit_code))
    return 0


PriceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--price",
        metavar="PROVIDER.KEY=VALUE",
        help="Override a price, e.g. --price r2.storage_gb_month=0.02 (repeatable; see docs/doctor-and-cost.md).",
        show_default=False,
    ),
]


@app.command()
def cost(env_file: EnvFileOpt = None, json_: JsonOpt = False, price: PriceOpt = None) -> int:
    """Estimate the monthly cost on R2 and on S3 from the replica's real size and write rate.

    Prices default to the providers' published ones; override with --price KEY=VALUE or BACKUPCTL_PRICES.
    """
    import os

    # lazy: each command loads only what it runs
    from backupctl.commands.cost import PRICES_ENV, estimate_cost, parse_price_overrides

    settings = load(env_file)
    overrides = [p for p in (os.environ.get(PRICES_ENV) or "").split(",") if p.strip()] + list(price or [])
    prices = parse_price_overrides(overrides)
    report = estimate_cost(settings, prices)
    if json_:
        emit_json(report)
        return 0
    from rich.table import Table

    usage = report["usage"]
    for r in report["replicas"]:
        say(
            f"{r['database']} -> {r['destination']}: {r['objects']} objects, {_gb(r['bytes'])}, "
            f"{r['objects_per_day']:.0f} objects/day over {r['window_days']:.2f} days"
        )
    t = Table(title="estimated monthly cost (USD)")
    for col in ("", "R2", "S3"):
        t.add_column(col, justify="right" if col else "left")
    r2, s3 = report["estimates"]["r2"], report["estimates"]["s3"]
    rows = [
        ("storage", "storage"),
        ("writes (uploads)", "writes"),
        ("reads", "reads"),
        ("egress (verify restores)", "egress"),
        ("total per month", "monthly_total"),
        ("total if every sync uploads", "monthly_total_if_busy"),
        ("one full restore (egress + reads)", "restore_once"),
    ]
    if r2["storage_at_retention"] is not None:
        rows.insert(1, ("storage once retention is full", "storage_at_retention"))
    cells = [[label, _usd(r2[key]), _usd(s3[key])] for label, key in rows]
    for row in cells:
        t.add_row(*row)
    print_table(["item", "R2", "S3"], cells, title="estimated monthly cost (USD)", terminal=t)
    say(
        f"stored {_gb(usage['stored_bytes'])}, {usage['writes_per_month']:.0f} uploads/month observed "
        f"({usage['writes_per_month_if_busy']:.0f} if every sync had changes), retention {usage['retention_days']:g} days"
    )
    for line in report["assumptions"]:
        say(f"  assumes: {line}")
    for line in report["notes"]:
        say(f"  note: {line}")
    return 0


def _usd(x: float) -> str:
    return f"${x:.4f}" if 0 < x < 0.01 else f"${x:,.2f}"


def _gb(n: float) -> str:
    return f"{n / 1024**3:.3f} GB" if n >= 1024**2 else f"{n / 1024:.1f} KB"
