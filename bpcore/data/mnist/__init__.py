"""MNIST digits from each source a config may name (bundled, IDX files, a CSV file, a download), and the
seeded split a network trains and validates on."""
