"""Layer 8: the core of the commands that are more than one check or one reading: `setup`
(``configure``, ``gitignore``), `start`/`stop` around the supervisor (``launch``), service files
(``service``), `justfile` (``just_recipes``), `cost`, and what commands ask of a project
(``project``).
"""
