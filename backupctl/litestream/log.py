"""litestream's log lines, read once: logfmt fields, levels, and what the lines mean to backupctl.

Litestream logs logfmt (`time=... level=INFO msg="..." key=value`); 0.5 prints fatal errors as
`Error: ...` on stderr, 0.3 logs `2026/01/01 00:00:00 ERROR ...` before its config is loaded.
The supervisor, the listings and verify all read litestream's output through ``parse_log_line``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Errors no retry fixes: a start fails at once instead of waiting for its deadline.
PERMANENT_ERRORS = re.compile(
    r"SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied|NoSuchBucket|InvalidBucketName|"
    r"no replicas configured|multiple replicas on a single database|AuthorizationHeaderMalformed|"
    r"AuthenticationFailed|permission denied",
    re.IGNORECASE,
)
_LOGFMT = re.compile(r'(\w[\w.\-]*)=("(?:[^"\\]|\\.)*"|\S*)')


@dataclass(frozen=True)
class LogLine:
    level: str  # INFO, ERROR, ... ("" when litestream printed something else)
    message: str
    fields: dict[str, str]
    raw: str

    @property
    def readable(self) -> str:
        if not self.level:
            return self.raw
        extra = " ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"{self.level} {self.message}" + (f" ({extra})" if extra else "")

    @property
    def error_text(self) -> str:
        detail = self.fields.get("error")
        return f"{self.message}: {detail}" if detail else self.message


def parse_log_line(raw: str) -> LogLine:
    """litestream's logfmt line (`time=... level=INFO msg="..." k=v`) made readable."""
    raw = raw.rstrip("\r\n")
    if raw.startswith("Error: "):  # 0.5 prints fatal errors like this
        return LogLine("ERROR", raw[len("Error: ") :], {}, raw)
    head: dict[str, str] = {}
    found: dict[str, str] = {}
    for key, value in _LOGFMT.findall(raw):
        target = head if key in ("time", "level", "msg") and key not in head else found
        target[key] = _unquote(value)
    if "level" not in head or "msg" not in head:
        # 0.3 before its config is loaded: "2026/01/01 00:00:00 ERROR failed to run error=..."
        m = re.match(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (ERROR|WARN|INFO|DEBUG) (.*)$", raw)
        if m:
            return LogLine(m.group(1), m.group(2), {}, raw)
        return LogLine("", raw, {}, raw)
    return LogLine(head["level"].upper(), head["msg"], found, raw)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\n", " ").replace("\\t", " ").replace("\\\\", "\\")
    return value


def logfmt(raw: str) -> dict[str, str]:
    """Every key=value of a logfmt line, values unquoted (the first of a repeated key wins)."""
    found: dict[str, str] = {}
    for key, value in _LOGFMT.findall(raw):
        found.setdefault(key, _unquote(value))
    return found

