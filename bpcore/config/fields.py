"""The building blocks of every config model: strict blocks, numbers that refuse booleans, upper bounds."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError

from bpcore.errors import ConfigError


class Strict(BaseModel):
    """Base for every config block: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_bool(value: Any) -> Any:
    # pydantic's lax mode reads true as 1 and 1.0: a boolean where a number belongs is a mistake
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "a boolean is not a number")
    return value


def _whole(value: Any) -> Any:
    value = _not_bool(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)  # so 1.0e+23 meets the bound (and its limit) rather than pydantic's integer-size error
    return value


Number = Annotated[float, BeforeValidator(_not_bool)]
Whole = Annotated[int, BeforeValidator(_whole)]
# Upper bounds keep a typo (1e23 iterations, 10^11 generated rows) a config error with the limit
# in the message, not a MemoryError or an hour of logging half-way through a run.
MAX_ITERATIONS = 1_000_000  # the line fit logs 2 metrics per step: 2,000 batches of 1,000 at most
MAX_ROWS = 10_000_000
MAX_EPOCHS = 10_000
MAX_UNITS = 100_000
MAX_CHAIN_ITERATIONS = 100_000  # the chain logs about 5 metrics per layer per step


# A Prefect work pool's name: not empty, not blank, none of the characters Prefect refuses in names (/ % & > <)
POOL_NAME = r"^[^/%&<>]*[^/%&<>\s][^/%&<>]*$"


def check_pool_name(name: str, where: str = "--pool") -> str:
    """``name`` if it can name a work pool; else a ConfigError naming ``where``."""
    if not re.match(POOL_NAME, name):
        raise ConfigError(f"{where} {name!r}: not a work pool name (it must not be empty nor hold / % & > <)")
    return name
