"""Many runs of one config: a grid expanded into validated points, a search space checked against the config,
and the random and TPE searches (Optuna's study) that draw their trials as the sweep runs."""
