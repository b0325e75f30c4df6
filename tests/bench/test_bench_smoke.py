"""The benchmark code itself works at tiny sizes and emits the issue's JSON keys (no timings asserted)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.procs import run_worker
from bench.raw import RawClient
from bench.report import README_BEGIN, README_END, markdown, print_tables, update_readme, write_json
from bench.signing import measure_signing
from bench.suite import GOALS, QUICK, best_of, ideal_batch_seconds, summarise
from bench.worker import make_big_png, run_client
from prefect_stablestudio.client.media_types import sniff_image_type

ISSUE_KEYS = (
    "batch_wall_ratio",
    "requests_per_job",
    "sign_ms_eip712",
    "sign_ms_eip191",
    "cpu_ratio_vs_raw",
    "upload_peak_rss_mb",
    "save_local_peak_rss_mb",
    "save_s3_peak_rss_mb",
)


def test_signing_figures_and_backend_are_reported() -> None:
    result = measure_signing(20)
    assert result["sign_ms_eip712"] > 0 and result["sign_ms_eip191"] > 0
    assert result["coincurve"] == (result["eth_keys_backend"] == "CoinCurveECCBackend")


async def test_the_raw_protocol_script_pays_and_gets_its_edit(
    sim: Any, fresh_account: Any, tmp_path: Path
) -> None:
    import httpx

    from bench.worker import png_bytes

    async with httpx.AsyncClient(timeout=30) as http:
        raw = RawClient(fresh_account, sim.base_url, http)
        written = await raw.edit(png_bytes(), "cat.png", "snow", str(tmp_path), sim.blob_api_url, 0.2)
    assert os.path.getsize(written) > 0
    paid = [
        p for p in sim.state()["ledger"]["payments"] if p["payer"].lower() == fresh_account.address.lower()
    ]
    assert sorted(p["route"] for p in paid) == ["flux-2-pro/edit", "upload"]


async def test_a_client_point_measures_edits_and_the_simulators_requests(sim: Any, tmp_path: Path) -> None:
    spec = {
        "mode": "client",
        "base_url": sim.base_url,
        "blob_api_url": sim.blob_api_url,
        "warmup_base_url": sim.base_url,
        "warmup_blob_api_url": sim.blob_api_url,
        "points": [(3, 3)],
        "latency": 0.2,
    }
    (point,) = await run_client(spec, str(tmp_path))
    assert point["ok"] == 3 and point["edits"] == 3 and point["cpu_s"] > 0
    assert point["rss_peak_mb"] >= point["rss_before_mb"] > 0
    # Other tests share this simulator, so the counts are at least ours.
    assert point["sim_requests"]["POST /api/generate/flux-2-pro/edit"] >= 6
    assert point["sim_requests"]["GET /api/jobs/{id}"] >= 3


def test_the_big_upload_file_is_sniffed_as_png_and_has_the_size(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    make_big_png(str(path), 3 * 1024 * 1024 + 5)
    assert path.stat().st_size == 3 * 1024 * 1024 + 5
    assert sniff_image_type(path.read_bytes()[:16]) == "image/png"


def test_an_upload_worker_process_reports_its_memory(sim: Any) -> None:
    spec = {"mode": "upload", "base_url": sim.base_url, "blob_api_url": sim.blob_api_url, "size_mb": 2}
    (point,) = run_worker(spec)["points"]
    assert point["ok"] == 1 and point["size_mb"] == 2
    assert point["rss_peak_mb"] >= point["rss_before_mb"] > 0


def _point(wall: float, cpu: float, n: int, latency: float = 5.0) -> dict[str, Any]:
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "ok": n,
        "edits": n,
        "concurrency": n,
        "latency": latency,
        "rss_before_mb": 60.0,
        "rss_peak_mb": 61.0,
        "requests_per_job": 2.0,
        "cpu_ms_per_edit": cpu / n * 1e3,
        "wall_ratio": wall / latency,
        "sim_cpu_s": 0.1,
    }


def test_the_summary_has_the_issue_keys_goals_and_verdicts_and_is_written(tmp_path: Path) -> None:
    measured = {
        "sign_ms_eip712": 0.3,
        "sign_ms_eip191": 0.1,
        "eth_keys_backend": "CoinCurveECCBackend",
        "coincurve": True,
        "upload_peak_rss_mb": 50.0,
        "upload_rss_baseline_mb": 60.0,
        "upload_rss_peak_abs_mb": 110.0,
        "upload_size_mb": 50.0,
        "save_local_peak_rss_mb": 8.0,
        "save_s3_peak_rss_mb": 70.0,
    }
    n = QUICK.batch_n
    result = summarise(
        QUICK,
        measured,
        raw=_point(5.5, 0.1, n),
        uploads=_point(0.5, 0.05, n),
        flow=_point(5.4, 0.2, n),
        scale_client=[_point(1.1, 0.01, 1, 1.0)],
        scale_flow=[_point(1.2, 0.1, 1, 1.0)],
        client=_point(5.3, 0.12, n),
    )
    result["meta"]["mode"] = "quick"
    assert set(ISSUE_KEYS) <= set(result) and set(result["goals"]) == set(GOALS) == set(ISSUE_KEYS)
    assert result["batch_wall_ratio"] == 5.4 / ideal_batch_seconds(n, QUICK.batch_concurrency, 5.0, 0.5)
    assert result["pass"]["batch_wall_ratio"] and not result["pass"]["upload_peak_rss_mb"]
    assert result["cpu_ratio_vs_raw"] == 2.0 and not result["pass"]["cpu_ratio_vs_raw"]
    assert result["pass"]["save_local_peak_rss_mb"] and not result["pass"]["save_s3_peak_rss_mb"]
    assert abs(result["cpu_ratio_client_vs_raw"] - 1.2) < 1e-9
    out = io.StringIO()
    print_tables(result, Console(file=out, width=150))
    assert "FAIL" in out.getvalue() and "Batch wall time" in out.getvalue()
    table = markdown(result)
    assert "| Batch wall time / ideal | <= 1.10 x |" in table and "| flow | 1 | 1 | 1 |" in table
    path = write_json(result, str(tmp_path))
    assert json.loads(Path(path).read_text())["requests_per_job"] == 2.0
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{README_BEGIN}\nold figures\n{README_END}\n\nrest\n")
    update_readme(result, str(readme))
    assert readme.read_text() == f"# Title\n\n{README_BEGIN}\n{table}{README_END}\n\nrest\n"


def test_the_readme_has_the_block_the_bench_writes() -> None:
    text = (Path(__file__).parents[2] / "README.md").read_text()
    assert text.count(README_BEGIN) == 1 and text.index(README_BEGIN) < text.index(README_END)


def test_a_phase_keeps_its_least_cpu_and_least_wall_time_and_every_round() -> None:
    first, second = _point(21.0, 1.9, 200), _point(20.6, 2.1, 200)
    best = best_of([first, second])
    assert (best["cpu_s"], best["wall_s"]) == (1.9, 20.6)
    assert best["rounds"] == [{"cpu_s": 1.9, "wall_s": 21.0}, {"cpu_s": 2.1, "wall_s": 20.6}]
    assert first["wall_s"] == 21.0  # the rounds themselves are left as measured
    assert best_of([second])["cpu_s"] == 2.1


async def test_the_events_measurement_reports_each_way_of_recording_a_payment(prefect_api: str) -> None:
    from bench.events import _measure_emission

    result = await _measure_emission(10, 0.0)
    assert set(result) == {"event_ms", "prefect_event_ms", "receipt_ms", "both_ms"}
