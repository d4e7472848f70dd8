"""Layer 9: `backupctl serve`: the refresh loop and HTTP server (``server``) and what `/healthz`,
`/metrics` and `/` answer (``answers``).
"""
