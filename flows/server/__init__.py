"""Prefect server helpers: pre-flight checks, work pools, automations, the temporary server bp starts."""
