"""The only place that knows paths, URLs and hashes: the weight registry and readers of foreign checkpoints."""
