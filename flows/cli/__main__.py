"""``python -m flows.cli``: the ``bp`` command."""

from flows.cli.main import entry

entry()
