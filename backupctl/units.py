"""Quantities as people read them."""

from __future__ import annotations


def human_size(n: float | None) -> str:
    """1536 -> "1.5 KB"; None -> "-": the one size formatter."""
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
