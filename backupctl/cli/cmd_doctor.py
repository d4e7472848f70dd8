"""(being written)"""

from backupctl.cli.app import app  # noqa: F401
