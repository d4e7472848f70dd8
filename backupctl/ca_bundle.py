"""AWS_CA_BUNDLE, which Litestream 0.5's S3 client fails at start with (docs/litestream-facts.md).

The rule of what litestream's environment gets instead, in one place: the versions that cannot run
with it (``Capabilities.drop_aws_ca_bundle``) never see it, and its file becomes SSL_CERT_FILE
unless that is set already. ``Capabilities.clean_environment`` applies it to every litestream
backupctl starts; the fast listing (``cli.quick_listing``) applies it without loading the versions.
Standard library only.
"""

from __future__ import annotations

import os

NAME = "AWS_CA_BUNDLE"


def move_ca_bundle(env: dict[str, str]) -> str | None:
    """Take AWS_CA_BUNDLE out of ``env``, passing its file on as SSL_CERT_FILE when that is unset; the
    notice to give, or None when it was not there."""
    if NAME not in env:
        return None
    bundle = env.pop(NAME)
    msg = "not passing AWS_CA_BUNDLE to litestream: Litestream {version}'s S3 client fails at start with it"
    if bundle and "SSL_CERT_FILE" not in env and os.path.isfile(bundle):
        env["SSL_CERT_FILE"] = bundle
        msg += " (using it as SSL_CERT_FILE instead)"
    return msg
