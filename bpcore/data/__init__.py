"""The data experiments train on: the line fit's tables, MNIST's digits, where a process may read them from,
and the per-process cache that lets a pre-flight check and a flow share one read."""
