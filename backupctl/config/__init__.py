"""Layer 2: a project's settings from its `.env` and environment (``settings``), and the litestream.yml
they render to through the Jinja templates (``render``). Imports the kinds and the top modules only.
"""
