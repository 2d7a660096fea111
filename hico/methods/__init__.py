"""Pretraining methods that belong to the suite itself (HiCo); baselines live in ``baselines/``."""
