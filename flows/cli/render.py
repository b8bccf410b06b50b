"""What a command prints of its result before the ``run_id:`` line; each returns the exit code."""

from __future__ import annotations

from flows.cli import exits


def sweep_table(result) -> int:
    """The children as a table (grid point, status, the sweep's metric, run id) on stdout."""
    from rich.console import Console
    from rich.table import Table

    columns = [key for key in result.rows[0] if key != "reason"]
    table = Table(box=None, pad_edge=False, header_style="bold")
    for key in columns:
        table.add_column(key)
    for row in result.rows:
        table.add_row(*(_text(row[key]) for key in columns))
    Console(width=200, soft_wrap=True).print(table)
    if result.registry:
        print(result.registry)
    return exits.FINISHED


def _text(value) -> str:
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def differences(result) -> int:
    print("identical" if not result.differences else "\n".join(result.differences))
    return exits.FINISHED if not result.differences else exits.FAILED
