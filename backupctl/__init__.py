"""backupctl: continuous SQLite backup with a pinned, verified Litestream."""

import os as _os

__version__ = "0.1.0"

# Where this package's files are (pins.json, and templates/ in a wheel). A plain path instead of
# importlib.resources, which would load tempfile, zipfile and shutil into every process, the
# supervisor included (backupctl is installed as files: pip, pipx and uv tool unpack the wheel).
PACKAGE_DIR = _os.path.dirname(_os.path.abspath(__file__))
