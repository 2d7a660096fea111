"""hico-bench: reproducible self-supervised pretraining benchmark for ultrasound video models."""

__version__ = "0.1.0"
