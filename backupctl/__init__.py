"""backupctl: continuous SQLite backup with a pinned, verified Litestream."""

__version__ = "0.1.0"
