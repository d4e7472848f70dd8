"""Layer 6: the checks that say whether a backup is good: the fast checks before litestream runs
(``preflight``), `doctor`, `verify`, `drill`, the continuity check (``continuity``), the
supervisor's published looks (``observations``), the verdicts of `status` (``status``,
``replica_status``) and notifications (``notify``).
"""
