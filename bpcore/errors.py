"""Errors that mean "the input is wrong": the command line turns them into exit code 2.

Messages quote what they read from a file only through ``excerpt``: a short, printable piece.
On a worker a message becomes a flow run's state, its logs and an MLflow tag, which other people
read; a whole line of a file (``data.path: /proc/self/environ``) could hand them its secrets.
"""

from collections.abc import Iterator

EXCERPT_CHARS = 40


class InputError(Exception):
    """Bad input (config, data, arguments). Its message is one line naming what is at fault."""


class ConfigError(InputError):
    """A config file, a key in it, or a --set override is wrong."""


class DataError(InputError):
    """A data file is missing, unreadable or holds values we cannot train on."""


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``value`` quoted for a message: at most ``limit`` characters, control characters escaped.

    ``'abc'``; ``'a\\x00b'``; ``'the first 40 characters...' (1919 characters)`` when it is longer.
    """
    text = value if isinstance(value, str) else str(value)
    shown = repr(text[:limit])
    if len(text) > limit:
        return f"{shown[:-1]}...{shown[-1]} ({len(text)} characters)"
    return shown


def one_line(exc: BaseException, limit: int = 500, named: bool = False) -> str:
    """What ``exc`` says, as one line of at most ``limit`` characters: its message with every run of whitespace
    (newlines too) as one space; its class's name when the message is empty; ``Type: message`` when ``named``."""
    text = " ".join(str(exc).split())
    if named or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:limit]


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then what it was raised from (``__cause__``, else ``__context__``, else an exception it holds among
    its arguments, as requests' errors hold urllib3's) and so on, each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__ or next((a for a in exc.args if isinstance(a, BaseException)), None)
