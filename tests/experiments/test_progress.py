"""The terminal progress bar (rich): drawn in place on a terminal, silent otherwise."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from bpcore.train.sgd import EpochStats
from flows.experiments.progress import EpochBar

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, color_system=None), out


def renders(text: str) -> list[str]:
    """Each drawing of the bar, in order, without escape codes (rich redraws after a carriage return)."""
    return [line.strip() for line in ANSI.sub("", text).replace("\n", "\r").split("\r") if line.strip()]


def three_epochs(bar: EpochBar) -> None:
    bar.update(EpochStats(1, 0.5, 0.8, 0.75, 1.0))
    bar.update(EpochStats(2, 0.25, 0.9, 0.8125, 2.0))
    bar.update(EpochStats(3, 0.125, 0.9525, None, 3.0))
    bar.close()


def test_bar_redraws_one_line_per_epoch_on_a_terminal():
    console, out = terminal()
    three_epochs(EpochBar(3, console=console, width=12))
    text = out.getvalue()
    drawn = renders(text)
    assert drawn[0].startswith("epoch 1/3") and drawn[0].endswith("cost 0.5000 train 80.00% val 75.00%")
    assert drawn[1].startswith("epoch 2/3") and drawn[1].endswith("cost 0.2500 train 90.00% val 81.25%")
    final = drawn[-1]
    assert final.startswith("epoch 3/3") and final.endswith("cost 0.1250 train 95.25%") and "val" not in final
    assert "━" * 12 in final  # the whole bar done
    assert ANSI.sub("", text).rstrip(" ").endswith("\n")  # the last render stays, on its own line


def test_epoch_numbers_keep_their_width():
    console, out = terminal()
    bar = EpochBar(12, console=console)
    bar.update(EpochStats(3, 1.0, 0.5, None, 1.0))
    bar.close()
    assert renders(out.getvalue())[-1].startswith("epoch  3/12 ")


def test_a_terminal_stream_gets_the_bar_too():
    out = FakeTerminal()
    three_epochs(EpochBar(3, stream=out))
    assert renders(out.getvalue())[-1].startswith("epoch 3/3")


def test_nothing_is_drawn_before_the_first_epoch():
    console, out = terminal()
    EpochBar(3, console=console).close()
    assert out.getvalue() == ""


@pytest.mark.parametrize("how", ["not a terminal", "quiet stream", "quiet console", "console not a terminal"])
def test_bar_is_silent_when_not_a_terminal_or_quiet(how):
    if how == "not a terminal":
        out = io.StringIO()
        bar = EpochBar(3, stream=out)
    elif how == "quiet stream":
        out = FakeTerminal()
        bar = EpochBar(3, stream=out, quiet=True)
    else:
        out = io.StringIO()
        console = Console(file=out, force_terminal=how == "quiet console")
        bar = EpochBar(3, console=console, quiet=how == "quiet console")
    three_epochs(bar)
    assert not bar.enabled and out.getvalue() == ""


def test_force_color_does_not_turn_a_log_into_a_terminal(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    out = io.StringIO()
    three_epochs(EpochBar(3, stream=out))
    assert out.getvalue() == ""
