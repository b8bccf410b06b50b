"""What a config is: its models and sections, how a file and ``--set`` overrides become one, and how a resolved
config is written out (dict, YAML, dotted keys, digest)."""
