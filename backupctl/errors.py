"""The one family of exceptions the core raises, and the exit-code table.

Every user-facing failure is a :class:`BackupctlError` carrying a message, a one-line hint
and an exit code. The CLI's single error boundary turns it into text (or JSON) and that
exit code; nothing else in the code base decides exit codes.
"""

from __future__ import annotations


class ExitCode:
    """Documented exit codes (README, "Exit codes"). Never renumber: monitors depend on them.
    Plain ints, not an IntEnum: importing enum alone cost every `status --json` 4 ms."""

    OK = 0
    INTERNAL = 1  # a bug in backupctl: rerun with BACKUPCTL_DEBUG=1 and report it
    USAGE = 2  # unknown option, missing argument (typer/click)
    CONFIG = 3  # .env / settings / template problem
    BINARY = 4  # litestream binary cannot be installed, verified or run
    LITESTREAM = 5  # a litestream command failed or timed out; replica unreachable
    CONFLICT = 6  # already running, lock held, file in use
    REFUSED = 7  # refused to touch data without an explicit flag (restore over a database)
    NOT_FOUND = 8  # no such database in the config, or no backup in the replica
    SUPERVISOR = 9  # background supervisor failed to start or to stop
    STATUS_STALE = 10  # status: some database's replica is behind the stale threshold
    STATUS_DOWN = 11  # status: replication is not running, or a database is not initialized
    STATUS_ERROR = 12  # status: a database or its replica reports an error
    STATUS_BROKEN = 13  # status: a replica is not whole (committed writes missing); backupctl is healing it
    VERIFY_FAILED = 20  # verify: the replica did not restore, or restored without the sentinel
    VERIFY_INCONCLUSIVE = 21  # verify: the replica did not catch up in time
    DRILL_FAILED = 22  # drill: a database did not restore, failed its checks, or lost rows
    DOCTOR_WARN = 30  # doctor: warnings only
    DOCTOR_FAIL = 31  # doctor: at least one check failed
    INTERRUPTED = 130  # SIGINT
    TERMINATED = 143  # SIGTERM

    @classmethod
    def codes(cls) -> dict[str, int]:
        """Every documented code, by name."""
        return {name: value for name, value in vars(cls).items() if name.isupper()}


# Which outcome gets which code: decided here and nowhere else (status, verify, doctor, drill).
VERDICT_EXIT = {
    "ok": ExitCode.OK,
    "stale": ExitCode.STATUS_STALE,
    "down": ExitCode.STATUS_DOWN,
    "not-initialized": ExitCode.STATUS_DOWN,
    "error": ExitCode.STATUS_ERROR,
    "broken": ExitCode.STATUS_BROKEN,
}
VERIFY_EXIT = {"verified": ExitCode.OK, "failed": ExitCode.VERIFY_FAILED, "inconclusive": ExitCode.VERIFY_INCONCLUSIVE}
DOCTOR_EXIT = {"fail": ExitCode.DOCTOR_FAIL, "warn": ExitCode.DOCTOR_WARN}
# Worst first: several outcomes in one run exit with the worst of them.
SEVERITY = (
    ExitCode.STATUS_BROKEN, ExitCode.STATUS_ERROR, ExitCode.STATUS_DOWN, ExitCode.STATUS_STALE,
    ExitCode.VERIFY_FAILED, ExitCode.VERIFY_INCONCLUSIVE,
    ExitCode.DOCTOR_FAIL, ExitCode.DOCTOR_WARN,
)  # fmt: skip


def worst_exit(codes: list[int]) -> int:
    """The exit code for several outcomes: the most severe one, else OK."""
    for code in SEVERITY:
        if code in codes:
            return code
    return ExitCode.OK


class BackupctlError(Exception):
    """A failure the user can act on. ``hint`` says what to do next, in one line."""

    exit_code: int = ExitCode.INTERNAL
    kind: str = "error"

    def __init__(self, message: str, hint: str = "", *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = list(details or [])

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "exit_code": int(self.exit_code),
            "message": self.message,
            "hint": self.hint,
            "details": self.details,
        }


class ConfigError(BackupctlError):
    exit_code = ExitCode.CONFIG
    kind = "config"


class UnsafePathError(ConfigError):
    """A file or folder backupctl would write through is a link, not ours, or writable by others (exit 3)."""

    kind = "unsafe-path"


class BinaryError(BackupctlError):
    exit_code = ExitCode.BINARY
    kind = "binary"


class LitestreamError(BackupctlError):
    exit_code = ExitCode.LITESTREAM
    kind = "litestream"


class ConflictError(BackupctlError):
    exit_code = ExitCode.CONFLICT
    kind = "conflict"


class RefusedError(BackupctlError):
    exit_code = ExitCode.REFUSED
    kind = "refused"


class NotFoundError(BackupctlError):
    exit_code = ExitCode.NOT_FOUND
    kind = "not-found"


class SupervisorError(BackupctlError):
    exit_code = ExitCode.SUPERVISOR
    kind = "supervisor"


class NoBackupError(NotFoundError):
    """The replica holds no backup of a database at all (a first deploy), rather than none at the point
    asked for: what `restore --if-replica-exists` passes over."""
