"""A finding and a report of findings: what `doctor`, the kinds' probes and the fast checks return.

Each check says what was looked at, ``ok``/``info``/``warn``/``fail``, what was found and the fix.
``finding`` is a stable code (documented in docs/doctor-and-cost.md) so scripts and tests can tell
problems apart without parsing prose.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from backupctl.errors import DOCTOR_EXIT, ExitCode


class Level(StrEnum):
    """How a check came out."""

    OK = "ok"
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"


OK, INFO, WARN, FAIL = Level
_RANK = {OK: 0, INFO: 0, WARN: 1, FAIL: 2}


@dataclass
class Check:
    """One finding. ``finding`` is None when all is well, else a stable code like ``no-such-bucket``."""

    name: str
    status: str
    found: str
    fix: str = ""
    subject: str | None = None
    finding: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def worst(self) -> str:
        return max((c.status for c in self.checks), key=lambda s: _RANK[s], default=OK)

    @property
    def exit_code(self) -> int:
        return DOCTOR_EXIT.get(self.worst, ExitCode.OK)

    def counts(self) -> dict[str, int]:
        counts = {OK: 0, INFO: 0, WARN: 0, FAIL: 0}
        for check in self.checks:
            counts[check.status] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.worst != FAIL,
            "exit_code": int(self.exit_code),
            "worst": self.worst,
            "counts": self.counts(),
            "checks": [c.to_json() for c in self.checks],
        }
