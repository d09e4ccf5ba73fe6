"""Prefect flows and the `voxbatch` CLI: they compose the plain building blocks in `tasks/`."""
