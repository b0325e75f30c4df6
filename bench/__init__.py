"""Benchmarks and soak tests (not part of CI). Run `python -m bench` (see README).

`python -m bench [--quick] [--json | --markdown]` (`bench.suite`) measures, in one run on one machine:
batch wall time of `edit_images` against ceil(N / concurrency) x latency + upload time, requests per job,
the client's EIP-712 and EIP-191 signing cost, CPU per edit of the flow against a raw-protocol script
(`bench.raw`: httpx + eth-account only), peak RSS of a 200 MB upload, and wall, CPU and RSS at 1 to 1000
edits at once. The simulator and Prefect's API server run in processes of their own; every measurement runs
in a fresh worker process (`bench.worker`). Results go to bench/results/ (gitignored).
"""
