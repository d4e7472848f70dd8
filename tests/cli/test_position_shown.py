"""The status table's position is what `restore --txid` reads as the same transaction."""

from __future__ import annotations

import pytest

from backupctl.cli.cmd_inspect import _shown_position
from backupctl.restore.plan import normalize_txid


@pytest.mark.quick
@pytest.mark.parametrize("txid", ["0000000000000045", "00000000000001ce", "0000000000000001", "8000000000000000"])
def test_a_05_txid_shown_short_reads_back_as_the_same_txid(txid: str) -> None:
    shown = _shown_position(txid, "0.5.17")
    assert shown.startswith("0x") and len(shown) <= len(txid) + 2
    # a bare "45" would be read as decimal 45 (0x2d): an earlier state, silently
    assert normalize_txid(shown) == txid


@pytest.mark.quick
def test_a_03_generation_and_no_position_are_shown_as_they_are() -> None:
    assert _shown_position("5af1ede6633d276d", "0.3.13") == "5af1ede6633d276d"
    assert _shown_position("0000000000000045", "v0.3.13") == "0000000000000045"  # a 0.3 generation of digits
    assert _shown_position("-", "0.5.17") == "-"
