"""Finding and reading the `.env`, where each value came from, and the "did you mean" for names
backupctl does not read.

The `.env` is read with python-dotenv without touching ``os.environ`` and without ``${VAR}``
interpolation (a `$` in a value is kept as written). A variable set in the process environment
overrides the same variable in the file. Empty values count as unset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from backupctl.errors import ConfigError
from backupctl.filekinds import kind_of, not_regular

# Read elsewhere (by backupctl or by litestream): not settings, but not typos either.
OTHER_KNOWN_VARIABLES = frozenset(
    {
        "BACKUPCTL_ENV_FILE", "BACKUPCTL_STATE_DIR", "BACKUPCTL_CACHE_DIR", "BACKUPCTL_HOME", "BACKUPCTL_DEBUG",
        "BACKUPCTL_LITESTREAM_BIN", "BACKUPCTL_ALLOW_VERSION_MISMATCH", "BACKUPCTL_LITESTREAM_BASE_URL",
        "BACKUPCTL_CA_BUNDLE", "BACKUPCTL_PRICES", "BACKUPCTL_NO_PDEATHSIG", "BACKUPCTL_SFTP_PASSWORD",
        "BACKUPCTL_TEST_CACHE",  # backupctl's own test suite
        "LITESTREAM_CONFIG",  # litestream's; backupctl drops it and passes -config (and says so)
    }
)  # fmt: skip
# Names in these families that are neither of the above are most likely typos: warn, with "did you mean".
WATCHED_PREFIXES = ("BACKUP_", "BACKUPCTL_", "R2_", "LITESTREAM_")
# AWS_* is shared with every AWS tool (the SDKs, the CLI, a Rails app's storage), so an unknown AWS_ name
# is no typo by itself: only one very close to an AWS_ name backupctl reads is, and only while that name
# is not set too (AWS_ACCESS_KEY beside AWS_ACCESS_KEY_ID is some other tool's variable). 0.88 takes
# AWS_SECRET_ACCES_KEY (0.98) and AWS_REGOIN (0.90) but not AWS_S3_REGION (0.87) or AWS_SECRET_KEY (0.80).
SHARED_PREFIX = "AWS_"
SHARED_CUTOFF = 0.88
# What the AWS SDKs and CLI read: never a typo of ours, whatever the ratio says.
AWS_TOOL_VARIABLES = frozenset(
    {
        "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CA_BUNDLE",
        "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
        "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE",
        "AWS_METADATA_SERVICE_TIMEOUT", "AWS_METADATA_SERVICE_NUM_ATTEMPTS", "AWS_EC2_METADATA_DISABLED",
        "AWS_DEFAULT_OUTPUT", "AWS_PAGER", "AWS_SDK_LOAD_CONFIG", "AWS_EXECUTION_ENV",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Origin:
    """Where a setting's value came from."""

    variable: str | None  # None: the default
    source: str  # "environment", the .env path, "default", "derived"


def read_env_file(path: Path) -> dict[str, str]:
    """The .env's variables, exactly as written (no interpolation, os.environ untouched).

    Only a regular file is read. A FIFO would block the open until some writer came (and be empty
    the second time it is read), a device is no .env: each is refused by what stat says, and a
    file swapped for one since is caught by a non-blocking open checked with fstat."""
    from dotenv import dotenv_values

    what = not_regular(path)
    if what is not None:
        raise _not_a_file(str(path), what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, encoding="utf-8") as stream:  # closes fd
            what = kind_of(os.fstat(fd).st_mode)
            if what is not None:
                raise _not_a_file(str(path), what)
            raw = dotenv_values(stream=stream, interpolate=False)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason})", "save the .env as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check the path and its permissions") from None
    return {k: v for k, v in raw.items() if v is not None}


def find_env_file(env_file: Path | None, cwd: Path) -> Path | None:
    """The .env to read: the one named, else the nearest `.env` in the current folder or above it
    (as git finds `.git`), so a command run from a project's subfolder reads the project's settings."""
    if env_file is not None:
        path = env_file.expanduser()
        if not path.is_absolute():
            path = cwd / path
        what = not_regular(path)
        if what is not None:
            shown = f"--env-file {env_file}" + ("" if env_file == path else f" ({path})")
            raise _not_a_file(shown, what)
        if not path.is_file():
            raise ConfigError(
                f"--env-file {env_file}: no such file",
                'create it (README, "Settings", lists every variable), or drop --env-file to use the project\'s .env',
            )
        return path.resolve()
    for folder in (cwd, *cwd.parents):
        candidate = folder / ".env"
        if candidate.is_file():
            return candidate.resolve()
        what = not_regular(candidate)
        # A FIFO, socket or device named .env is this project's .env gone wrong: found, so that
        # read_env_file says what it is, rather than "no .env found". A folder named .env is most
        # often a virtualenv (python -m venv .env), not settings: the search goes on above it.
        if what is not None and what != "a folder":
            return candidate.resolve()
    return None


def _not_a_file(named: str, what: str) -> ConfigError:
    """The error for a .env that exists but is no regular file (``named`` as the user named it)."""
    return ConfigError(
        f"{named} is {what}, not a regular file, so it was not read",
        "make the .env a plain text file; settings that come from elsewhere (a secrets manager, "
        "<(...)) can be exported in the environment, which overrides the .env",
    )


def env_search_note(cwd: Path) -> str:
    """Where find_env_file looked when it found nothing, in words."""
    return f"no .env found in {cwd} or any folder above it, so only the process environment was read"


def read_chains(
    chains: Mapping[str, tuple[str, ...]],
    environ: Mapping[str, str],
    file_values: Mapping[str, str],
    source_name: str,
    default: Callable[[str], str | None],
) -> tuple[dict[str, str | None], dict[str, Origin]]:
    """Each setting's value and origin: the first variable of its chain set in the environment or
    the file (the environment first, variable by variable), else ``default(setting)``."""
    values: dict[str, str | None] = {}
    origins: dict[str, Origin] = {}
    for setting, chain in chains.items():
        values[setting] = None
        for variable in chain:
            if environ.get(variable):
                values[setting], origins[setting] = environ[variable], Origin(variable, "environment")
                break
            if file_values.get(variable):
                values[setting], origins[setting] = file_values[variable], Origin(variable, source_name)
                break
        else:
            fallback = default(setting)
            if fallback is not None:
                values[setting], origins[setting] = fallback, Origin(None, "default")
    return values, origins


def _close_matches(name: str, names: list[str], cutoff: float) -> list[str]:
    import difflib  # lazy: only a name backupctl does not read needs it (a supervisor keeps what it imports)

    return difflib.get_close_matches(name, names, n=1, cutoff=cutoff)


def unknown_variables(
    file_values: Mapping[str, str], environ: Mapping[str, str], file_name: str, settings_variables: frozenset[str]
) -> list[str]:
    """One warning per BACKUP_/BACKUPCTL_/R2_/LITESTREAM_ name that backupctl does not read (a typo
    like BACKUP_DATABASE is otherwise silently ignored), with the closest known name; and per AWS_
    name that is a near miss of one backupctl reads (AWS_SECRET_ACCES_KEY), see SHARED_CUTOFF."""
    known_names = settings_variables | OTHER_KNOWN_VARIABLES
    known = sorted(known_names)
    shared = sorted(n for n in known_names if n.startswith(SHARED_PREFIX))
    found = [(name, file_name) for name in file_values]
    found += [(name, "environment") for name in environ if name not in file_values]
    warnings = []
    for name, where in found:
        if name in known_names:
            continue
        if name.startswith(SHARED_PREFIX):
            if name in AWS_TOOL_VARIABLES:
                continue
            close = _close_matches(name, shared, SHARED_CUTOFF)
            if not close or file_values.get(close[0]) or environ.get(close[0]):
                continue
        elif name.startswith(WATCHED_PREFIXES):
            close = _close_matches(name, known, 0.75)
        else:
            continue
        hint = f"; did you mean {close[0]}?" if close else ' (README, "Settings", lists the variables)'
        warnings.append(f"{name} (in {where}) is not a variable backupctl reads, so it is ignored{hint}")
    return warnings
