"""Each kind's training flow, by import: the flow side of the kinds ``bpcore.kinds`` declares.

bpcore names the kinds without importing Prefect; this table maps each to its flow, and a test
checks that the two list the same kinds. Adding a kind: declare it in bpcore, write its flow, add
it here.
"""

from __future__ import annotations

from flows.experiments.chain import chain
from flows.experiments.linreg import linreg
from flows.experiments.mnist import mnist

FLOWS = {"linreg": linreg, "mnist": mnist, "chain": chain}


def flow_for(kind: str):
    """The Prefect flow that trains one run of ``kind``."""
    return FLOWS[kind]
