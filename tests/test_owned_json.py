"""owned.json_loads / json_dumps: the json package's C accelerator called directly (status --json
without json's imports), against the json package itself: the same values, the same text, the
same errors."""

from __future__ import annotations

import json
import math
import random

import pytest

from backupctl.owned import json_dumps, json_loads

DOCUMENTS = [
    {"ok": True, "exit_code": 0, "databases": [{"name": "app.db", "size": 8192, "lag_seconds": 0.0, "behind": None}]},
    {"é": "naïve\n\t\"quoted\" \\ back", "emoji": "💾", "ctl": "\x00\x1b\u2028", "big": 10**30, "neg": -1.5e-300},
    [1, 2.5, 1e100, -0.0, "x", None, True, False, [], {}, [[{}]]],
    "a string alone",
    42,
    {"lone": "\ud800"},
]


@pytest.mark.parametrize("value", DOCUMENTS)
def test_the_same_text_and_the_same_value_as_json(value: object) -> None:
    expected = json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)
    assert json_dumps(value) == expected
    for text in (expected, json.dumps(value, indent=2), "  \n" + json.dumps(value) + "\r\n\t"):
        assert json_loads(text) == json.loads(text)
    if "\ud800" not in expected:
        assert json_loads(expected.encode("utf-8")) == json.loads(expected.encode("utf-8"))


def test_what_json_would_refuse_or_stretch() -> None:
    for text in ("", "  ", "{", '{"a": }', '{"a":1} x', "[1,]", "'single'", '"unterminated', "\ufeff{}", "nul"):
        with pytest.raises(ValueError) as ours:
            json_loads(text)
        with pytest.raises(ValueError) as theirs:
            json.loads(text)
        assert str(ours.value) == str(theirs.value), text
    assert json_loads(b"\xef\xbb\xbf{}") == json.loads(b"\xef\xbb\xbf{}") == {}  # bytes with a BOM: json takes them
    assert math.isnan(json_loads("NaN")) and json_loads("[Infinity]") == [math.inf]
    assert json_dumps({"n": math.nan, "obj": object}) == json.dumps({"n": math.nan, "obj": object}, separators=(",", ":"),
                                                                    default=str, ensure_ascii=False)  # fmt: skip
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        json_dumps(loop)


def test_random_documents_round_trip_as_json_does() -> None:
    rng = random.Random(7)

    def value(depth: int) -> object:
        kind = rng.randrange(7 if depth < 4 else 4)
        if kind == 0:
            return rng.choice([None, True, False])
        if kind == 1:
            exponent = rng.randint(-300, 300)
            return rng.choice([rng.randint(-(10**20), 10**20), rng.uniform(-1e6, 1e6), rng.random() * 10**exponent])
        if kind in (2, 3):
            return "".join(chr(rng.choice([rng.randint(0x20, 0x7E), rng.randint(0, 0x2FFF)])) for _ in range(rng.randint(0, 12)))
        if kind in (4, 5):
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {str(value(depth + 1)): value(depth + 1) for _ in range(rng.randint(0, 4))}

    for _ in range(2000):
        doc = value(0)
        text = json.dumps(doc, separators=(",", ":"), default=str, ensure_ascii=False)
        assert json_dumps(doc) == text
        assert json_loads(text) == json.loads(text)
