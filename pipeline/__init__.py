"""Hyperparameter sweeps that find the best CNN for chest X-ray classification."""

__version__ = "0.1.0"
