"""Benchmarks: the W1-W4 workloads against the GraphQL server and against a raw-SQL floor, side by side.

`python -m bench.run --quick|--full` runs everything; see docs/BENCHMARKS.md.
"""
