"""Benchmarks of holysheep_async against its peers (``python -m benchmarks``, ``nox -s bench``)."""
