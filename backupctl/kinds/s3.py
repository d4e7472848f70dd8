"""S3 and S3-compatible stores (``s3``: AWS, MinIO, SeaweedFS...) and Cloudflare R2 (``r2``: S3 with an
endpoint derived from the account id, region ``auto`` and its own variable names).

`doctor`'s probe and `cost`'s listing talk to the store through botocore (SigV4 signing and the
servers' error codes are not something to hand-roll). The probe lists, writes, reads and deletes
one small object with a unique name under the replica's prefix, and removes it even when a later
step fails.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from backupctl.errors import ConfigError, LitestreamError
from backupctl.findings import FAIL, OK, WARN, Check
from backupctl.kinds.base import (
    BUCKET_VARIABLES,
    FALSE,
    PROBE_PREFIX,
    TRUE,
    Checking,
    Origin,
    Prices,
    Replica,
    ReplicaKind,
    StoredObject,
    clean_path,
)
from backupctl.redact import cleaner, mask

if TYPE_CHECKING:
    from backupctl.config.settings import Settings
    from backupctl.findings import Check
    from backupctl.versions import Capabilities

S3_CONNECT_TIMEOUT = 3.0
S3_READ_TIMEOUT = 10.0


class S3Kind(ReplicaKind):
    name = "s3"
    litestream_type = "s3"
    variables = {
        "bucket": BUCKET_VARIABLES,
        "endpoint": ("BACKUP_ENDPOINT", "LITESTREAM_REPLICA_ENDPOINT"),
        "region": ("BACKUP_REGION", "LITESTREAM_REPLICA_REGION", "AWS_DEFAULT_REGION", "AWS_REGION"),
        "force_path_style": ("BACKUP_FORCE_PATH_STYLE",),
        "access_key_id": ("BACKUP_ACCESS_KEY_ID", "R2_ACCESS_KEY_ID", "LITESTREAM_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        "secret_access_key": (
            "BACKUP_SECRET_ACCESS_KEY", "R2_SECRET_ACCESS_KEY", "LITESTREAM_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY",
        ),
    }  # fmt: skip
    secrets = frozenset({"secret_access_key"})
    # Shown masked too: an access key id is not a secret on its own, but it is half of one.
    masked = frozenset({"access_key_id"})
    options = ("bucket", "endpoint", "region", "force_path_style")
    needs_bucket = True
    uses_s3_client = True
    dropped_variables = {
        "LITESTREAM_ACCESS_KEY_ID": "litestream copies it over AWS_ACCESS_KEY_ID; backupctl sets that itself",
        "LITESTREAM_SECRET_ACCESS_KEY": "litestream copies it over AWS_SECRET_ACCESS_KEY; backupctl sets that itself",
    }
    withheld_variables = ("BACKUP_SECRET_ACCESS_KEY", "R2_SECRET_ACCESS_KEY")
    # S3 Standard: $0.023/GB-month, PUT $0.005/1000, GET $0.0004/1000, egress $0.09/GB.
    prices = Prices(0.023, 5.00, 0.40, 0.09)
    default_region = "us-east-1"
    implied_rank, implied_by = 1, "bucket"

    def check(self, checking: Checking) -> None:
        endpoint = checking.values["endpoint"]
        if not endpoint or not checking.once("s3-endpoint"):
            return
        if not valid_endpoint(endpoint):
            checking.add(
                checking.variable("endpoint", "BACKUP_ENDPOINT"),
                f"{endpoint!r} is not an http(s) URL with a host (and a port from 1 to 65535, if any)",
                "write it like https://<account>.r2.cloudflarestorage.com or http://127.0.0.1:9000",
            )
        elif "@" in urlsplit(endpoint).netloc:
            # Not echoed: the endpoint is no secret setting, so `env` and litestream.yml would show the password.
            checking.add(
                checking.variable("endpoint", "BACKUP_ENDPOINT"),
                "the URL has a user:password@ part before its host, which S3 does not use and which would be "
                "shown by `backupctl env` and written into litestream.yml",
                "remove it: the access key goes in BACKUP_ACCESS_KEY_ID and BACKUP_SECRET_ACCESS_KEY",
            )

    def check_values(self, checking: Checking) -> None:
        raw = checking.values["force_path_style"]
        if raw is not None and checking.once("force-path-style") and raw.strip().lower() not in TRUE | FALSE:
            checking.add("BACKUP_FORCE_PATH_STYLE", f"{raw!r} is not true or false", "write true or false")

    def replica(
        self, name: str, remote_path: str, values: Mapping[str, str | None], local_dir: Path, caps: Capabilities
    ) -> Replica:
        flag = (values["force_path_style"] or "").strip().lower()
        force_path_style = True if flag in TRUE else False if flag in FALSE else None
        endpoint = values["endpoint"]
        if force_path_style is None:
            # Custom S3-compatible servers (MinIO, SeaweedFS) need path style; AWS and R2 do not.
            force_path_style = bool(endpoint) and self.name == "s3"
        return Replica(
            kind=self.name,
            litestream_type="s3",
            path=remote_path,
            bucket=values["bucket"],
            endpoint=endpoint,
            region=values["region"] or self.default_region,
            force_path_style=force_path_style,
        )

    def destination(self, replica: Replica) -> str:
        return f"s3://{replica.bucket}/{replica.path} at {replica.endpoint or 's3.amazonaws.com'}"

    def lock_key(self, replica: Replica) -> str:
        endpoint = replica.endpoint or "s3.{}.amazonaws.com".format(replica.region or "us-east-1")
        return f"s3://{normal_endpoint(endpoint)}/{replica.bucket}/{clean_path(replica.path)}"

    def template_values(self, replica: Replica) -> dict[str, Any]:
        return {
            "bucket": replica.bucket,
            "endpoint": replica.endpoint,
            "region": replica.region,
            "force_path_style": replica.force_path_style,
        }

    def environment(self, settings: Settings) -> dict[str, str]:
        creds = settings.credentials
        env = {}
        if creds.access_key_id:
            env["AWS_ACCESS_KEY_ID"] = creds.access_key_id
        if creds.secret_access_key:
            env["AWS_SECRET_ACCESS_KEY"] = creds.secret_access_key
        return env

    def address(self, replica: Replica) -> tuple[str, int] | None:
        if not replica.endpoint:
            return (f"s3.{replica.region or 'us-east-1'}.amazonaws.com", 443)
        parts = urlsplit(replica.endpoint)
        if not parts.hostname:
            return None
        return (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))

    def probe(
        self, settings: Settings, replica: Replica, server_dates: list[tuple[float, float]], clean: Callable[[str], str]
    ) -> Check:
        return _probe_s3(settings, replica, server_dates, clean)

    def list_objects(self, settings: Settings, replica: Replica) -> list[StoredObject]:
        return _list_s3(settings, replica)


class R2Kind(S3Kind):
    name = "r2"
    variables = {**S3Kind.variables, "r2_account_id": ("BACKUP_R2_ACCOUNT_ID", "R2_ACCOUNT_ID")}
    # R2: storage $0.015/GB-month, class A $4.50/M, class B $0.36/M, free egress,
    # 10 GB-month + 1M class A + 10M class B free each month.
    prices = Prices(0.015, 4.50, 0.36, 0.0, free_storage_gb=10.0, free_writes_million=1.0, free_reads_million=10.0)
    default_region = "auto"
    implied_rank, implied_by = 0, "r2_account_id"

    def check(self, checking: Checking) -> None:
        values, origins = checking.values, checking.origins
        if not values["endpoint"]:
            account = values["r2_account_id"]
            if not account:
                checking.add(
                    "R2_ACCOUNT_ID",
                    "R2 needs the Cloudflare account id to build its endpoint",
                    "set R2_ACCOUNT_ID (shown in the R2 dashboard), or BACKUP_ENDPOINT",
                )
            elif not re.fullmatch(r"[A-Za-z0-9-]+", account):
                checking.add("R2_ACCOUNT_ID", "is not an account id (letters, digits and '-')", "copy it from the R2 dashboard")
            else:
                values["endpoint"] = f"https://{account}.r2.cloudflarestorage.com"
                origins["endpoint"] = Origin(origins["r2_account_id"].variable, "derived")
        super().check(checking)
        for setting, var in (("access_key_id", "R2_ACCESS_KEY_ID"), ("secret_access_key", "R2_SECRET_ACCESS_KEY")):
            if not values[setting]:
                checking.add(var, "R2 needs an API token's access key pair", f"set {var} (R2 → Manage R2 API Tokens)")


def valid_endpoint(endpoint: str) -> bool:
    if not re.match(r"^https?://[^\s/]+", endpoint):
        return False
    try:
        parts = urlsplit(endpoint)
        return bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # a port that is not a number, or out of range
        return False


def normal_endpoint(endpoint: str) -> str:
    """`HTTPS://Host:443/` and `https://host` alike: host[:port] in lower case, default ports dropped."""
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    scheme = (parts.scheme or "https").lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None or (scheme, port) in (("https", 443), ("http", 80)):
        return host
    return f"{host}:{port}"


def open_s3_client(
    settings: Settings,
    replica: Replica,
    *,
    connect_timeout: float = S3_CONNECT_TIMEOUT,
    read_timeout: float = S3_READ_TIMEOUT,
    attempts: int = 1,
) -> Any:
    """A botocore S3 client for this replica with the settings' credentials, as litestream would use them.

    AWS_CA_BUNDLE (which breaks litestream 0.5) is fine for botocore and is honoured. Raises
    ImportError when botocore is missing.
    """
    import botocore.session
    from botocore.config import Config

    session = botocore.session.Session()
    creds = settings.credentials
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": attempts, "mode": "standard"},
        s3={"addressing_style": "path" if replica.force_path_style else "auto"},
        signature_version="s3v4",
        # Plain requests that every S3-compatible store understands (R2, MinIO, SeaweedFS).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent_extra="backupctl",
    )
    return session.create_client(
        "s3",
        region_name=replica.region or "us-east-1",
        endpoint_url=replica.endpoint or None,
        aws_access_key_id=creds.access_key_id or None,
        aws_secret_access_key=creds.secret_access_key or None,
        config=config,
    )


def replica_prefix(replica: Replica) -> str:
    path = replica.path.strip("/")
    return f"{path}/" if path else ""


_CODES_BY_STEP = {"list": "s3:ListBucket", "write": "s3:PutObject", "read": "s3:GetObject", "delete": "s3:DeleteObject"}


def _probe_s3(
    settings: Settings, replica: Replica, server_dates: list[tuple[float, float]], clean: Callable[[str], str]
) -> Check:
    import email.utils
    import uuid


    subject = replica.destination
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return Check(
            "replica access",
            WARN,
            "cannot probe the replica: botocore is not installed",
            "reinstall backupctl (pip install --force-reinstall backupctl) to get its botocore dependency",
            subject=subject,
            finding="s3-library-missing",
        )
    try:
        client = open_s3_client(settings, replica)
    except BotoCoreError as exc:
        return _s3_failure(settings, replica, "connect", exc, clean)
    bucket = replica.bucket or ""
    key = f"{replica_prefix(replica)}{PROBE_PREFIX}{uuid.uuid4().hex}"
    body = b"backupctl doctor probe: safe to delete\n"
    step = "list"
    written = False

    def note_date(meta: dict[str, Any] | None) -> None:
        raw = ((meta or {}).get("HTTPHeaders") or {}).get("date")
        if raw and not server_dates:
            try:
                server_dates.append((email.utils.parsedate_to_datetime(raw).timestamp(), time.time()))
            except (TypeError, ValueError):
                pass

    try:
        resp = client.list_objects_v2(Bucket=bucket, Prefix=replica_prefix(replica), MaxKeys=1)
        note_date(resp.get("ResponseMetadata"))
        step = "write"
        client.put_object(Bucket=bucket, Key=key, Body=body)
        written = True
        step = "read"
        got = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        if got != body:
            return Check(
                "replica access",
                FAIL,
                "the probe object read back different from what was written",
                "check the endpoint: it may be a proxy that rewrites content",
                subject=subject,
                finding="probe-failed",
            )
        step = "delete"
        client.delete_object(Bucket=bucket, Key=key)
        step = "confirm"
        left = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount", 0)
        written = bool(left)
    except (ClientError, BotoCoreError) as exc:
        if isinstance(exc, ClientError):
            note_date(exc.response.get("ResponseMetadata"))
        return _s3_failure(settings, replica, step, exc, clean, leftover=key if written else None)
    finally:
        if written:
            try:
                client.delete_object(Bucket=bucket, Key=key)
            except (ClientError, BotoCoreError, OSError):  # noqa: S110 - best effort; the failure is already being reported
                pass
    if written:
        return Check(
            "replica access",
            WARN,
            f"the probe object {key} is still listed after deletion",
            "the store may list deleted objects for a while; check again later",
            subject=subject,
            finding="probe-left-behind",
        )
    return Check(
        "replica access",
        OK,
        f"listed, wrote, read and deleted a probe object under s3://{bucket}/{replica_prefix(replica)}"
        " (s3:ListBucket, PutObject, GetObject and DeleteObject all work)",
        subject=subject,
    )


def _s3_failure(
    settings: Settings, replica: Replica, step: str, exc: Exception, clean: Callable[[str], str], leftover: str | None = None
) -> Check:
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
        SSLError,
    )


    subject = replica.destination
    bucket = replica.bucket
    endpoint = replica.endpoint or "AWS S3"
    key_var = _variable(settings, "access_key_id", "BACKUP_ACCESS_KEY_ID")
    secret_var = _variable(settings, "secret_access_key", "BACKUP_SECRET_ACCESS_KEY")
    left = f" (the probe object {leftover} may be left behind; delete it)" if leftover else ""

    def fail(finding: str, found: str, fix: str) -> Check:
        return Check("replica access", FAIL, clean(found) + left, fix, subject=subject, finding=finding)

    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
        return fail(
            "endpoint-unreachable",
            f"cannot reach {endpoint}: {exc}",
            "check BACKUP_ENDPOINT (R2: https://<account-id>.r2.cloudflarestorage.com), the network and any firewall",
        )
    if isinstance(exc, SSLError):
        return fail(
            "tls-error",
            f"TLS failed with {endpoint}: {exc}",
            "check the endpoint's certificate, or AWS_CA_BUNDLE / SSL_CERT_FILE",
        )
    if isinstance(exc, NoCredentialsError):
        return fail(
            "no-credentials",
            "no credentials were found for the replica",
            "set BACKUP_ACCESS_KEY_ID and BACKUP_SECRET_ACCESS_KEY (or R2_ACCESS_KEY_ID / R2_SECRET_ACCESS_KEY)",
        )
    if not isinstance(exc, ClientError):
        return fail("probe-failed", f"{step} failed: {exc}", "run `backupctl doctor` again; if it persists, check the endpoint")
    error = exc.response.get("Error") or {}
    code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
    message = str(error.get("Message") or "")
    if code in ("NoSuchBucket", "404") and step == "list":
        return fail(
            "no-such-bucket",
            f"bucket {bucket!r} does not exist at {endpoint}",
            f"create the bucket (R2: dashboard → R2 → Create bucket; S3: aws s3 mb s3://{bucket}), or fix BACKUP_BUCKET",
        )
    if code == "SignatureDoesNotMatch":
        return fail(
            "signature-mismatch",
            f"the server knows access key {mask(settings.credentials.access_key_id)} but the secret does not match it",
            f"copy the secret access key again into {secret_var} (it is shown only once when the token is created)",
        )
    if code in ("InvalidAccessKeyId", "InvalidAccessKeyID"):
        return fail(
            "unknown-access-key",
            f"the server does not know access key {mask(settings.credentials.access_key_id)}",
            f"check {key_var}: the token may be deleted, or belong to another account or endpoint",
        )
    if code == "RequestTimeTooSkewed":
        return fail(
            "clock-skew",
            "the server rejected the request because this machine's clock is off",
            "sync the clock (timedatectl set-ntp true, or chrony/ntpd)",
        )
    if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
        permission = _CODES_BY_STEP.get(step, "access")
        if step == "write":
            return fail(
                "read-only",
                "the credentials can list the bucket but not write to it (AccessDenied on PutObject"
                + (f": {message})" if message else ")"),
                "give the key write access: R2 token permission 'Object Read & Write'; S3 policy allowing "
                "s3:PutObject, s3:GetObject, s3:DeleteObject and s3:ListBucket on the bucket",
            )
        return fail(
            f"{step}-denied",
            f"AccessDenied on {permission} ({step} step){': ' + message if message else ''}",
            f"allow {permission} for these credentials on bucket {bucket!r} "
            "(all four are needed: s3:ListBucket, s3:PutObject, s3:GetObject, s3:DeleteObject)",
        )
    return fail(
        "probe-failed",
        f"{step} failed with {code}{': ' + message if message else ''}",
        "check the bucket, endpoint and credentials; `backupctl env` shows what is in use",
    )


def _variable(settings: Settings, setting: str, default: str) -> str:
    origin = settings.origins.get(setting)
    return origin.variable if origin and origin.variable else default


def _list_s3(settings: Settings, replica: Replica) -> list[StoredObject]:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise ConfigError(
            "cannot list an S3/R2 replica: botocore is not installed",
            "reinstall backupctl (pip install --force-reinstall backupctl) to get its botocore dependency",
        ) from None
    prefix = replica_prefix(replica)
    found = []
    try:
        client = open_s3_client(settings, replica, read_timeout=30.0, attempts=3)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=replica.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["Key"][len(prefix) :].startswith(PROBE_PREFIX):
                    continue
                found.append(StoredObject(obj["Key"], int(obj["Size"]), obj["LastModified"].timestamp()))
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else type(exc).__name__
        raise LitestreamError(
            f"cannot list {replica.destination}: {code}",
            "run `backupctl doctor`: it names the cause and the fix",
            details=[cleaner(settings)(str(exc))],
        ) from None
    return found
