"""The experiments: the steps every run takes (pipeline), one flow per kind and their registry, checkpoints and
resumption, reproduce, plots and progress."""
