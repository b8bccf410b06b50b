"""The terminal progress bar: drawn in place on a terminal, silent otherwise."""

from __future__ import annotations

import io

from bpcore.training import EpochStats
from flows.progress import EpochBar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_redraws_one_line_on_a_terminal():
    out = FakeTerminal()
    bar = EpochBar(4, stream=out, width=8)
    bar.update(EpochStats(1, 0.5, 0.8, 0.75, 1.0))
    bar.update(EpochStats(2, 0.25, 0.9, None, 2.0))
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "epoch 1/4 [##......] cost 0.5000 train 80.00% val 75.00%" in text
    assert "epoch 2/4 [####....] cost 0.2500 train 90.00%" in text and "val" not in text.split("\r")[2]


def test_bar_is_silent_when_not_a_terminal():
    out = io.StringIO()
    bar = EpochBar(2, stream=out)
    bar.update(EpochStats(1, 0.5, 0.8, 0.75, 1.0))
    bar.close()
    assert out.getvalue() == ""
