"""The experiments: the steps every run takes (pipeline), one flow per kind, the registry of them, reproduce, plots."""
