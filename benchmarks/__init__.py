"""Benchmark harness for the VAE service (issue 5): `python -m benchmarks` or `make bench`.

Drives real servers over loopback with `wrk`, measures the HTTP and compute ceilings on the
same machine, and a deliberately naive FastAPI baseline (`benchmarks.naive_app`), then writes
tables, raw JSON and a plot under `benchmarks/results/`.
"""
