"""Training recipes of the toy-faces models (not needed to load or use them)."""
