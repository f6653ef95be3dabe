"""Keeps docs/compatibility.md true: every `same` / `extended` name of its table exists here,
every `absent` one does not."""
import importlib
import os
import re

import pytest

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "compatibility.md")
ROW = re.compile(r"^\| `([\w.]+)` \| (yes|no|varies) \| (yes|no|varies) \| (same|extended|absent) \|")


def _rows():
    with open(DOC) as f:
        rows = [m.groups() for m in map(ROW.match, f) if m]
    assert len(rows) > 100, "the table of docs/compatibility.md was not found"
    return rows


def _resolve(dotted):
    """The object a dotted name reaches: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("name, v045, current, ours", _rows(), ids=lambda v: v if "." in str(v) else None)
def test_table_row(name, v045, current, ours):
    if ours == "absent":
        with pytest.raises((ImportError, AttributeError)):
            _resolve(name)
    else:
        _resolve(name)


def test_every_name_is_listed_once():
    names = [r[0] for r in _rows()]
    assert len(names) == len(set(names))
