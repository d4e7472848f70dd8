"""Keeping secrets out of what backupctl shows, logs or writes.

- ``mask``: at most the last 4 characters of a secret;
- ``scrub``: every secret value of a project replaced in a text about to be shown or logged;
- ``cleaner``: ``scrub`` plus what a kind shows masked (an access key id: half of a credential);
- ``EnvRef``: a variable litestream expands at run time, so a secret's value never lands in a
  rendered file (the config holds ``${NAME}``; the value goes to litestream's environment).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backupctl.config.settings import Settings


class EnvRef(str):
    """A variable litestream expands at run time (its value is set in litestream's environment)."""


def mask(value: str | None) -> str:
    """At most the last 4 characters of a secret; short ones are fully hidden."""
    if not value:
        return ""
    if len(value) < 12:
        return "****"
    return "****" + value[-4:]


def scrub(text: str, settings: Settings | None) -> str:
    """Mask every secret value in text that is about to be shown or logged."""
    if settings is None:
        return text
    for secret in settings.credentials.secret_values():
        if len(secret) >= 4:
            text = text.replace(secret, "****")
    return text


def cleaner(settings: Settings) -> Callable[[str], str]:
    """Masks secrets (and what a kind shows masked, like an access key id: half of a credential) in
    anything shown to the user."""
    halves = [v for v in settings.credentials.masked_values() if len(v) >= 4]

    def clean(text: str) -> str:
        text = scrub(text, settings)
        for value in halves:
            text = text.replace(value, mask(value))
        return text

    return clean
