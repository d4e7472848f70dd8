"""Litestream's single-dash spellings (``-timestamp``, ``-config``...) on backupctl's command lines.

People copy restore steps written for litestream (``litestream restore -timestamp=...``, the
Campfire guide). click reads a single dash as short options, so ``-timestamp X`` became
``-t imestamp`` with X left over as the database ("no database 'X'"), and ``-generation`` failed on
``-g``. :func:`normalise` runs once per command, before click parses it (``app.Command``), and
works on that command's own options, so every parse of a command line agrees: the fast path
(``fast.py``) answers no single-dash long spelling and leaves them all to typer.

- A litestream flag listed in :data:`LITESTREAM` becomes backupctl's option when the command has
  it: ``-timestamp X`` -> ``--timestamp X``, ``-timestamp=X`` -> ``--timestamp=X`` (Go's flag
  package reads both forms the same).
- One of those flags on a command that has no equivalent is a usage error saying so.
- Any other single-dash word that is not something click reads (a short flag, a cluster like
  ``-bv``, a short option with its value glued on like ``-tyesterday``) is a usage error naming the
  ``--long`` option meant. A word that is exactly a long option's name (``-force``, ``-output``)
  is always that mistake, even where click could read it otherwise (``-output`` as ``-o utput``).
  litestream-ruby's ``-database=PATH`` (the Campfire guide) is answered with the argument form.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

# litestream's flag (without its dash) -> backupctl's option. Only flags whose meaning is the
# same here; a command gets the translation only when it has that option.
LITESTREAM: dict[str, str] = {
    "timestamp": "--timestamp",
    "generation": "--generation",
    "txid": "--txid",
    "o": "--output",
    "config": "--config",
    "if-replica-exists": "--if-replica-exists",
    "if-db-not-exists": "--if-db-not-exists",
    "replica": "--replica",
}
# Where the meaning lives instead, for a litestream flag a command has no equivalent for.
_RESTORES = "it is `backupctl restore`'s"
INSTEAD: dict[str, str] = {
    "config": "backupctl follows the project's .env (name another one with --env-file)",
    **{name: _RESTORES for name in ("timestamp", "generation", "txid", "o", "if-replica-exists", "if-db-not-exists")},
    "replica": "restore, verify, drill and `status --replica-only` take --replica",
}


class SpellingError(ValueError):
    """A single-dash spelling that is not an option of the command; the message names the option meant."""


def normalise(args: list[str], options: Mapping[str, bool], command: str) -> list[str]:
    """``args`` with litestream's spellings translated for a command whose options are ``options``
    (every spelling, ``--long`` and ``-s``, mapped to whether it takes a value). Raises
    :class:`SpellingError` for a single-dash word that would otherwise be misread."""
    result: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":  # everything after it is an argument, as click reads it
            result += args[i - 1 :]
            break
        if arg.startswith("--"):
            result.append(arg)
            if "=" not in arg and options.get(arg) and i < len(args):  # its value is never an option
                result.append(args[i])
                i += 1
            continue
        if not arg.startswith("-") or len(arg) < 2:
            result.append(arg)  # an argument (or "-", a value on its own)
            continue
        name, eq, value = arg[1:].partition("=")
        meant = LITESTREAM.get(name)
        # `-o PATH` is click's reading too; only Go's `-o=PATH` needs translating (click: the path "=PATH").
        if meant is not None and meant in options and (len(name) > 1 or eq):
            result.append(f"{meant}={value}" if eq else meant)
            if not eq and options[meant] and i < len(args):
                result.append(args[i])
                i += 1
            continue
        if meant is not None and len(name) > 1:
            raise SpellingError(f"-{name} is litestream's option; `{command}` has no {meant}: {INSTEAD[name]}")
        if name == "database":  # litestream-ruby's rake tasks (the Campfire guide), not litestream's own flag
            example = f"{command} {value if eq else 'DB'}"
            raise SpellingError(f"-database is not an option of `{command}`: name the database as its argument (`{example}`)")
        if len(name) > 1 and f"--{name}" in options:
            raise SpellingError(f"-{name} is not an option; did you mean --{name}?")
        reading = _click_reads(arg, options)
        if reading is not None:
            result.append(arg)
            if reading and i < len(args):  # `-o PATH`, `-vo PATH`: PATH is a value, whatever it looks like
                result.append(args[i])
                i += 1
            continue
        if len(name) > 1 and name.replace("-", "").isalnum():
            close = difflib.get_close_matches(f"--{name}", [o for o in options if o.startswith("--")], n=1, cutoff=0.75)
            raise SpellingError(f"-{name} is not an option of `{command}`" + (f"; did you mean {close[0]}?" if close else ""))
        result.append(arg)  # click says what is wrong with it
    return result


def _click_reads(arg: str, options: Mapping[str, bool]) -> bool | None:
    """How click reads ``arg`` (one dash) as short options: flags in a row (``-bv``), the last of them
    possibly taking the rest of the word as its value (``-tyesterday``). None: not at all; True: the
    next argument is the last option's value (``-o PATH``, ``-vo PATH``); False: the word is complete."""
    for n, char in enumerate(arg[1:]):
        short = f"-{char}"
        if short not in options:
            return None
        if options[short]:
            return n == len(arg) - 2  # nothing glued on: the value is the next argument
    return False
