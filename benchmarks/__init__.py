"""The scripts behind docs/results.md; each runs from the repository root as `python -m benchmarks.NAME`."""
