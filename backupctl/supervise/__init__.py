"""Layer 7: the supervisor: its state machine and run loop (``supervisor``), one litestream run
(``child``), confirming a start and judging a final sync (``confirm``), periodic verify and drill
(``periodic``), new databases while running (``dbwatch``) and the detached process itself
(``background``).
"""
