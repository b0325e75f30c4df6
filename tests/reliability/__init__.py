"""Reliability and security suite (issue 7): faults, hostile servers, bad inputs, secrets, crash after paying.

Where each required case lives:

- 100 edits under 20 % faults on every route: `test_soak.py` (30 edits in CI, through `edit_images`; the
  100-edit run is `make soak` / `python -m bench.soak`), `test_client_faults.py` (the client alone, with real
  timeouts; paid uploads surviving confirm and blob faults; a resume after many newer jobs).
- Crash after payment (kill -9, both windows): `test_crash.py`.
- Hostile or misconfigured servers: `test_hostile.py`, `test_flows_hostile.py`, and in tests/client
  `test_paying_faults.py::test_hostile_quotes_sign_nothing` (cap, asset, network, payTo allow-list),
  `test_client_edges.py` (SIWX domain/uri, redirects, a paid jobs GET), `test_paying_faults.py` (redirects).
- Bad inputs: `test_bad_inputs.py` (client), `test_bad_inputs_flows.py` (flows).
- Secrets: `test_secrets.py`.
- Simulator hygiene found on the way: `test_simulator_disconnects.py`.
"""
