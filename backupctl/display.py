"""How text from outside backupctl (file and folder names, values from the .env, what litestream
says) is shown to people: with its control characters escaped.

A file name may hold any character but '/' and NUL. A newline in one splits a message, a table row
or a log line in two (and can fake a line of output or of the log); an escape sequence drives the
terminal; a right-to-left override reorders what is read; an undecodable byte (a lone surrogate
from the file system) cannot even be written to a UTF-8 stream. So every sink of lines for people
(``backupctl.cli.output``'s messages and tables, the supervisor's log) passes its text through
:func:`shown`. Those lines are one line each by design, so nothing is lost that was meant to be
there. ``--json`` keeps the real value: JSON escapes it already, and a program needs the exact name.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see cli/output.py)
if TYPE_CHECKING:
    import re

# C0 and C1 controls and DEL; Unicode line and paragraph separators; the bidirectional marks,
# embeddings, overrides and isolates; lone surrogates (undecodable bytes of a file name).
_UNSAFE_CLASS = "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
_UNSAFE: re.Pattern[str] | None = None  # compiled at the first line shown: `status --json` shows none, and re costs it 6 ms
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(text: str) -> str:
    """``text`` with each control character written as its escape (``\\n``, ``\\x1b``, ``\\u202e``), as
    ``repr`` would, and everything else as it is (no quotes added, backslashes not doubled, so that
    escaping twice changes nothing: a message escaped where it is made passes a sink unchanged)."""
    global _UNSAFE
    if _UNSAFE is None:
        import re

        _UNSAFE = re.compile(_UNSAFE_CLASS)
    if not _UNSAFE.search(text):  # nearly always: no copy
        return text
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
