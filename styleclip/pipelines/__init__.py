"""Orchestration shared by every front end (CLI, app, benchmarks, Python callers)."""
