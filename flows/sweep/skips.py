"""What a divergence-aware grid says as it skips (in-process or on a pool), in the words its results table uses: the
rates it does not train are ``skipped``; one already training is only told to stop, and its own outcome follows
(``skipped`` when the stop took effect, else what it ended as: a line fit is not stopped once it trains)."""

from __future__ import annotations

from bpcore.search.grid import GridPoint
from flows.experiments import steering


def announce(logger, diverged: GridPoint, skipped: list[GridPoint], told: list[GridPoint]) -> None:
    """One line: the rate that diverged, the points recorded skipped, and those told to stop as they train."""
    if not skipped and not told:
        return
    parts = []
    if skipped:
        parts.append(f"skipped {_names(skipped)} (not started)")
    if told:
        parts.append(f"told {_names(told)} (already training) to stop")
    logger.info("%s diverged: %s", diverged.name, "; ".join(parts))


def told_ended(logger, point: GridPoint, status: str) -> None:
    """How a point told to stop ended: skipped, or (the stop came too late) what it ended as."""
    if status == steering.SKIPPED:
        logger.info("%s stopped: skipped", point.name)
    else:
        logger.info("%s ended %s before its stop took effect", point.name, status)


def _names(points: list[GridPoint]) -> str:
    return ", ".join(p.name for p in points)
