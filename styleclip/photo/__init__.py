"""Real photos: find and align faces, invert them, pivotal tuning, fidelity, paste edits back."""
