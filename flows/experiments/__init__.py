"""The experiments: the tracked-run skeleton, one flow per kind, the registry of them, reproduce, plots."""
