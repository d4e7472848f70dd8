"""spawn.run_once, both ways it starts a program (os.posix_spawn for a plain call on Linux, subprocess
for the rest), with real processes: the same exit codes, output, session, timeout and errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from backupctl.litestream import spawn

SH = "/bin/sh"


def _both(argv: list[str], timeout: float = 10.0) -> list[tuple[int, bytes, bytes]]:
    """The plain call, and the same call made to take Popen's way (a working folder given)."""
    return [spawn.run_once(argv, {"PATH": "/bin:/usr/bin"}, timeout=timeout),
            spawn.run_once(argv, {"PATH": "/bin:/usr/bin"}, timeout=timeout, cwd=os.getcwd())]  # fmt: skip


def test_exit_codes_streams_and_the_environment_are_the_same_both_ways() -> None:
    plain, popen = _both([SH, "-c", 'echo "out $PATH"; echo err >&2; exit 3'])
    assert plain == popen == (3, b"out /bin:/usr/bin\n", b"err\n")
    plain, popen = _both([SH, "-c", "kill -TERM $$"])
    assert plain == popen == (-15, b"", b"")  # minus the signal's number, as Popen.returncode
    plain, popen = _both([SH, "-c", "head -c 3000000 /dev/zero; head -c 2000000 /dev/zero >&2"])
    assert plain == popen and len(plain[1]) == 3_000_000 and len(plain[2]) == 2_000_000  # both pipes drained
    plain, popen = _both([SH, "-c", "read x; echo \"[$x]\"; ps -o sid= -p $$; ps -o pid= -p $$"])
    for code, out, _err in (plain, popen):
        got, sid, pid = out.decode().split()
        assert code == 0 and got == "[]" and sid == pid  # stdin closed; a session of its own


def test_a_bare_program_name_is_looked_up_in_path_as_popen_does() -> None:
    assert spawn.run_once(["sh", "-c", "echo found"], {"PATH": "/bin:/usr/bin"}, timeout=10) == (0, b"found\n", b"")


def test_a_program_that_cannot_start_says_so() -> None:
    for cwd in (None, os.getcwd()):
        with pytest.raises(spawn.CannotStart) as caught:
            spawn.run_once(["/nonexistent/litestream"], {}, timeout=5, cwd=cwd)
        assert isinstance(caught.value.error, FileNotFoundError)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the posix_spawn way is Linux's")
def test_past_the_timeout_the_whole_group_is_killed_and_what_it_printed_kept(tmp_path) -> None:  # noqa: ANN001
    marker = tmp_path / "grandchild"
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        spawn.run_once([SH, "-c", f"echo before; (sleep 30; touch {marker}) & sleep 30"], {}, timeout=1)
    assert caught.value.output == b"before\n"
    time.sleep(0.5)
    assert not marker.exists()
    gone = subprocess.run(["pgrep", "-f", f"touch {marker}"], capture_output=True)
    assert gone.returncode == 1  # the grandchild went with its group
