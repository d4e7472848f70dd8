"""Layer 3: this machine: who runs what (process records, ``processes``), litestreams backupctl did not
start (``foreign_litestreams``), service managers, locks, a project's state files and log files, and
which litestream config a read-only command uses (``config_in_use``).
"""
