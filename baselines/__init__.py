"""Baseline pretraining methods: one module + one YAML recipe each (see README.md)."""
