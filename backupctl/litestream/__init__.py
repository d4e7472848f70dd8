"""Layer 4: the litestream binary: downloading, verifying and caching it (``download``, ``index``,
``binary``), running it (``runner``), its log lines (``log``) and listings (``listings``), and what
differs between its series behind one adapter (``series``, ``v05``, ``v03``, ``adapter``).
"""
