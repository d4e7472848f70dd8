"""backupctl's command line. The only layer that prints, reads the terminal or exits.

``main`` is the single error boundary: every :class:`~backupctl.errors.BackupctlError`
becomes a short message (or a JSON document with ``--json``) and its documented exit code.
Commands signal a non-zero exit with ``typer.Exit(code)``. Usage errors (click's) reach it too, as
``output.UsageError`` (``app.Group``): exit 2, click's text for people, the JSON error with ``--json``.
"""

from __future__ import annotations

import _signal  # signal's C module: signal.py's enums of every signal cost every `status --json` 0.6 ms
import os
import sys


class Interrupted(Exception):
    """Ctrl-C outside the supervisor (which handles signals itself)."""


def _on_sigint(signum: int, frame: object) -> None:
    raise Interrupted()


def _raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one: a supervisor holds a lock per database and
    per replica (600 databases under the common `ulimit -Sn 1024` ran out). Go programs, litestream
    included, do the same at start. A hard limit too low is reported cleanly where it bites."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        # lazy: `--version` answers before anything else loads (scripts call it often)
        from backupctl import __version__

        print(f"backupctl {__version__}")
        return 0

    _raise_open_files_limit()
    # lazy: not loaded for `--version`
    from backupctl.cli import fast
    from backupctl.cli.output import os_error, report_error, report_internal_error
    from backupctl.errors import BackupctlError, ExitCode

    json_mode = "--json" in args
    previous = _signal.signal(_signal.SIGINT, _on_sigint)
    try:
        code = fast.answer(args)  # the JSON reads scripts call most, without loading typer
        if code is not None:
            return code
        # lazy: typer loads only for what the fast parser does not answer
        from backupctl.cli.app import app

        app(args=args, prog_name="backupctl", standalone_mode=True)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return int(ExitCode.INTERNAL)
    except BackupctlError as exc:
        report_error(exc, json_mode)
        return int(exc.exit_code)
    except Interrupted:
        stopped = BackupctlError("interrupted", "")
        stopped.exit_code = ExitCode.INTERRUPTED
        report_error(stopped, json_mode)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # `backupctl logs | head`: the reader left; not an error worth a message.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return 0
    except OSError as exc:
        # The machine said no (a file, a limit): say what and where, never a traceback.
        report_error(os_error(exc), json_mode)
        return int(ExitCode.CONFIG)
    except Exception as exc:  # the one place a bug turns into exit 1
        report_internal_error(exc, json_mode)
        return int(ExitCode.INTERNAL)
    finally:
        _signal.signal(_signal.SIGINT, previous)
    return 0
