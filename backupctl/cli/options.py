"""The options both command-line parsers read, each declared once.

typer builds its options from these (``cli/common.py``: ``typer_option``), and the fast parser of the
JSON reads (``cli/fast.py``) builds its forms from the same objects: a flag's spelling, whether it
takes a value, its default and its environment variable cannot drift apart. No typer here: the fast
path imports this module.
"""

from __future__ import annotations


class Option:
    """One option. A plain class: a dataclass or NamedTuple would import dataclasses or typing, 15-19 ms
    of every `status --json`."""

    __slots__ = ("default", "dest", "envvar", "flags", "help", "takes_value")

    def __init__(self, flags: tuple[str, ...], dest: str, help: str = "", takes_value: bool = False,  # noqa: A002
                 default: str | None = None, envvar: str | None = None) -> None:  # fmt: skip
        self.flags = flags  # every spelling click accepts: "--config", "-c"
        self.dest = dest  # the parameter's name in the command function
        self.help = help
        self.takes_value = takes_value  # False: a flag, True when given
        self.default = default  # the value when absent (an option taking a value)
        self.envvar = envvar  # read when the option is absent (click's envvar)


ENV_FILE = Option(
    ("--env-file",),
    "env_file",
    "The .env to read (default: the nearest .env in this folder or above). The process environment overrides it.",
    takes_value=True,
    envvar="BACKUPCTL_ENV_FILE",
)
CONFIG = Option(
    ("--config", "-c"),
    "config",
    "A litestream.yml to use as it is (default: the one rendered beside the .env); litestream's -config works too.",
    takes_value=True,
)
JSON = Option(("--json",), "json_", "Print one JSON document on stdout (errors too).")
FRESH = Option(
    ("--fresh",),
    "fresh",
    "Read litestream and every replica now instead of the running supervisor's last look "
    "(taken every few seconds; at most 30s old when used).",
)
LEVEL = Option(("--level",), "level", "LTX level: 0-9 or all (9 = snapshots, 0 = incremental).", takes_value=True,
               default="all")  # fmt: skip
RESTORE_IF_MISSING = Option(
    ("--restore-if-missing",), "restore_if_missing", "Restore a missing database from its replica before replicating."
)
# The detached supervisor of `start --background` (commands/launch.py builds its argv): only the fast
# parser reads it, so the long-lived process never loads typer.
FOREGROUND_CHILD = Option(("--foreground-child",), "foreground_child")

LISTING_COMMANDS = ("snapshots", "wal", "ltx", "generations")  # what `cli.answers.listing` lists
