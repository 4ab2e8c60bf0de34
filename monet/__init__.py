"""Monet: a PyTorch Lightning training suite for generative models of paintings."""

__version__ = "0.1.0"
