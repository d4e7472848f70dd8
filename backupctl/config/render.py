"""Render litestream.yml from the settings through Jinja templates, safely.

Safety does not depend on template authors remembering a filter: the environment's
``finalize`` hook turns every ``{{ expression }}`` into a YAML double-quoted scalar
(booleans and integers excepted), so no value can end a line, open a comment, add a key
or change a type. Every ``$`` is written as the YAML escape ``\\x24``: litestream expands
``$VAR`` over the raw file text before parsing YAML, and ``\\x24`` is not a ``$`` until
the YAML parser decodes it, so the value arrives exactly as written.

The only deliberate ``$`` in the output comes from :class:`EnvRef`: a reference to a
variable that backupctl itself puts in litestream's environment (the sftp password),
so that secrets never land in the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backupctl import PACKAGE_DIR, __version__
from backupctl import kinds as replica_kinds
from backupctl.config.secondary import check_rendered
from backupctl.config.settings import Settings
from backupctl.errors import ConfigError, RefusedError
from backupctl.owned import secure_dir, write_atomic
from backupctl.paths import project_state_dir, sha256
from backupctl.redact import EnvRef
from backupctl.versions import capabilities

USER_TEMPLATES_DIRNAME = "backupctl-templates"
MAIN_TEMPLATE = "litestream.yml.j2"


@dataclass(frozen=True)
class Rendered:
    text: str
    template_dir: Path  # where the main template came from
    user_templates: bool


def default_templates_dir() -> Path:
    """The shipped templates: inside the wheel, or `templates/` at the top of a checkout."""
    packaged = Path(PACKAGE_DIR) / "templates"
    if (packaged / MAIN_TEMPLATE).is_file():
        return packaged
    checkout = Path(PACKAGE_DIR).parent / "templates"
    if (checkout / MAIN_TEMPLATE).is_file():
        return checkout
    raise ConfigError(
        "backupctl's templates are missing from this installation",
        "reinstall backupctl (pip install --force-reinstall backupctl)",
    )


def user_templates_dir(settings: Settings | Path) -> Path:
    project_dir = settings if isinstance(settings, Path) else settings.project_dir
    return project_dir / USER_TEMPLATES_DIRNAME


def yaml_scalar(value: object) -> str:
    """One safe YAML scalar for any value a template prints."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, EnvRef):
        # Single quotes: the expanded secret is validated to hold no quote or control character.
        return f"'${{{value}}}'"
    text = str(value)
    if "\x00" in text:
        raise ConfigError("a value contains a NUL byte", "remove it from the .env")
    return '"' + "".join(_escape(ch) for ch in text) + '"'


_ESCAPES = {'"': '\\"', "\\": "\\\\", "$": "\\x24", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(ch: str) -> str:
    """One character inside a YAML double-quoted scalar; anything not plainly printable is escaped."""
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    # U+0085, U+2028 and U+2029 are YAML line breaks: written raw they would be folded away.
    printable = 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xD7FF or (0xE000 <= code <= 0xFFFD and code != 0xFEFF)
    printable = printable and code not in (0x2028, 0x2029)
    if printable or code >= 0x10000:
        return ch
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def _environment(settings: Settings):  # -> jinja2.Environment
    import jinja2

    loaders: list[jinja2.BaseLoader] = []
    user_dir = user_templates_dir(settings)
    if user_dir.is_dir():
        loaders.append(jinja2.FileSystemLoader(str(user_dir)))
    loaders.append(jinja2.FileSystemLoader(str(default_templates_dir())))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        finalize=yaml_scalar,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def template_context(settings: Settings) -> dict[str, object]:
    """What templates see. No credentials: only references to variables set at run time."""

    caps = capabilities(settings.version)
    dbs = []
    for db in settings.databases:
        replicas = [replica_kinds.template_values(r) for r in db.replicas]  # each kind's own keys
        dbs.append({"path": str(db.path), "name": db.name, "replicas": replicas})
    return {
        "version": settings.version,
        "series": caps.series,
        "shape": caps.config_shape,
        "per_replica_retention": caps.per_replica_retention,
        "dbs": dbs,
        "sync_interval": settings.sync_interval,
        "snapshot_interval": settings.snapshot_interval,
        "retention": settings.retention,
        "metrics_addr": settings.values.get("litestream_metrics_addr"),  # litestream's /metrics, for `serve`
    }


def render(settings: Settings) -> Rendered:
    """Render litestream.yml text. Raises ConfigError for a broken template or a leaked secret."""
    import jinja2

    env = _environment(settings)
    try:
        template = env.get_template(MAIN_TEMPLATE)
        text = template.render(template_context(settings))
    except jinja2.TemplateError as exc:
        where = getattr(exc, "filename", None) or MAIN_TEMPLATE
        line = getattr(exc, "lineno", None)
        raise ConfigError(
            f"template {where}{f' line {line}' if line else ''}: {exc.message or exc}",
            f"fix the template, or delete {USER_TEMPLATES_DIRNAME}/ to use the defaults",
        ) from None
    for secret in settings.credentials.secret_values():
        if len(secret) >= 4 and secret in text:
            raise ConfigError(
                "the rendered litestream.yml would contain a secret",
                "templates must not print credentials: backupctl passes them to litestream through its environment",
            )
    if settings.secondary is not None:
        check_rendered(settings.databases, text)
    filename = Path(template.filename or "")
    user_dir = user_templates_dir(settings)
    return Rendered(text=text, template_dir=filename.parent, user_templates=user_dir in filename.parents)


def eject_templates(project_dir: Path, force: bool = False) -> Path:
    """Copy the default templates into the project for editing; setup then prefers them."""
    target = user_templates_dir(project_dir)
    if target.exists() and not force:
        raise RefusedError(
            f"{target} already exists",
            "edit the templates there, or pass --force to overwrite them with the defaults",
        )
    import shutil  # lazy: only `templates eject` copies a tree; the supervisor never loads shutil for it

    shutil.copytree(default_templates_dir(), target, dirs_exist_ok=True)
    return target


@dataclass(frozen=True)
class ConfigSync:
    path: Path
    action: str  # "unchanged", "created", "updated"


def _input_key(settings: Settings) -> str:
    """A digest of everything a render depends on: the template context and the template files."""
    import json


    digest = sha256(__version__.encode())
    digest.update(json.dumps(template_context(settings), sort_keys=True, default=str).encode("utf-8", "surrogatepass"))
    for folder in (user_templates_dir(settings), default_templates_dir()):
        if folder.is_dir():
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    st = file.stat()
                    digest.update(f"{file}\0{st.st_mtime_ns}\0{st.st_size}\0".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


HEADER = "# Written by `backupctl setup`"


def written_by_backupctl(settings: Settings, path: Path, current: bytes) -> bool:
    """True when the file at path is one backupctl wrote (its header, or the digest it recorded)."""
    import json

    if current.startswith(HEADER.encode()):
        return True
    try:
        stamp = json.loads(_stamp_path(settings).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    digest = sha256(current).hexdigest()
    return isinstance(stamp, dict) and stamp.get("path") == str(path) and stamp.get("sha256") == digest


def guard_foreign_config(settings: Settings, path: Path, current: bytes) -> None:
    """Refuse to replace a litestream.yml that backupctl did not write (a user's hand-made config)."""
    if not written_by_backupctl(settings, path, current):
        raise RefusedError(
            f"{path} was not written by backupctl; refusing to replace it",
            f"move it aside (backupctl then renders its own), or pass --config {path} to use it as it is "
            "(start, status and the listings take --config)",
        )


def _stamp_path(settings: Settings) -> Path:
    return project_state_dir(settings.project_dir) / "config.stamp"


def _stamp_matches(settings: Settings, path: Path, current: bytes, key: str) -> bool:
    import json

    try:
        stamp = json.loads(_stamp_path(settings).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return stamp == {"path": str(path), "input": key, "sha256": sha256(current).hexdigest()}


def fingerprint(settings: Settings, config_path: Path) -> str:
    """What a supervisor's config was made from: the settings and templates (the default
    litestream.yml), or the bytes of a user's own --config file. Compared by `status` to say
    "settings changed since this supervisor started"."""
    if config_path == settings.config_path:
        return "settings:" + _input_key(settings)
    try:
        return "file:" + sha256(config_path.read_bytes()).hexdigest()
    except OSError:
        return "file:?"


def matches_settings(settings: Settings, path: Path, current: bytes) -> bool:
    """Whether ``current`` (the bytes of ``path``) is what the settings render to, or carries the stamp
    of that rendering; a hand-written config at the default path is refused (``guard_foreign_config``)."""
    if _stamp_matches(settings, path, current, _input_key(settings)):
        return True
    guard_foreign_config(settings, path, current)
    return current == render(settings).text.encode("utf-8")


VIEW_CONFIG = "replica-{name}-{digest}.yml"  # in the state folder: a config naming one replica of every database


def view_config(settings: Settings) -> Path:
    """The config of settings narrowed to one replica of each database (``replica_views.view``), in the
    state folder under a name made of its text: the supervisor reads through one while `status` (with a
    changed .env, say) may render another, and neither may swap the other's. Never litestream.yml or the
    supervisor's copy: those name every replica."""
    assert settings.replica_view is not None
    folder = secure_dir(project_state_dir(settings.project_dir), what="state folder")
    text = render(settings).text
    digest = sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    path = folder / VIEW_CONFIG.format(name=settings.replica_view, digest=digest)
    if not path.is_file():
        write_atomic(path, text)
    return path


def sync_config(settings: Settings, path: Path | None = None) -> ConfigSync:
    """Make litestream.yml match the settings, so "no replicas configured" never reaches a user.

    Only `setup` and `start` call this: read-only commands use ``config_for_reading``. A stamp
    (inputs digest + the file's own digest) lets the common case, nothing changed, skip Jinja.
    """

    path = path or settings.config_path
    try:
        current_bytes = path.read_bytes()
    except FileNotFoundError:
        current_bytes = None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check its permissions") from None
    key = _input_key(settings)
    if current_bytes is not None and _stamp_matches(settings, path, current_bytes, key):
        return ConfigSync(path, "unchanged")
    text = render(settings).text
    action = "unchanged"
    if current_bytes is None or current_bytes != text.encode("utf-8"):
        if current_bytes is not None:
            guard_foreign_config(settings, path, current_bytes)
        write_atomic(path, text)
        action = "created" if current_bytes is None else "updated"
    record_stamp(settings, path, text, key)
    return ConfigSync(path, action)


def record_stamp(settings: Settings, path: Path, text: str, key: str | None = None) -> None:
    """Record that ``path`` holds ``text``, rendered from the settings' current inputs: the read-only
    commands (``matches_settings``) then know it current without Jinja (about 70 ms of each). Written by
    whatever writes litestream.yml from the settings (`setup`, `start`)."""
    import json

    try:
        secure_dir(_stamp_path(settings).parent, what="state folder")
        write_atomic(_stamp_path(settings), json.dumps({"path": str(path), "input": key or _input_key(settings),
                                                        "sha256": sha256(text.encode("utf-8")).hexdigest()}))
    except OSError:
        pass  # only an optimisation
