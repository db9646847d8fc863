"""Plumbing that knows no model: bounds, atomic outputs, imaging, runtime, the torchrun world."""
