"""The result as a table (rich) and as JSON written to bench/results/."""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# key, label, unit, how the goal reads
HEADLINES = (
    ("batch_wall_ratio", "Batch wall time / ideal", "x", "<= 1.10 x"),
    ("requests_per_job", "Requests per job (5 s job, SIWX incl.)", "", "<= 3"),
    ("sign_ms_eip712", "EIP-712 signature (x402)", "ms", "<= 0.5 ms"),
    ("sign_ms_eip191", "EIP-191 signature (SIWX)", "ms", "<= 0.5 ms"),
    ("cpu_ratio_vs_raw", "CPU per edit, flow / raw protocol", "x", "<= 1.3 x"),
    ("upload_peak_rss_mb", "Peak RSS above baseline, big upload", "MB", "<= 40 MB"),
    ("save_local_peak_rss_mb", "Peak RSS above baseline, big result to a folder", "MB", "<= 64 MB"),
    ("save_s3_peak_rss_mb", "Peak RSS above baseline, big result to S3 (moto)", "MB", "<= 64 MB"),
)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def headline_table(result: dict[str, Any]) -> Table:
    """Figure, goal, measured value, pass/fail."""
    table = Table(title=f"prefect-stablestudio benchmarks ({result['meta']['mode']})")
    for column in ("figure", "goal", "measured", ""):
        table.add_column(column)
    for key, label, unit, goal in HEADLINES:
        value = result.get(key)
        ok = result["pass"].get(key)
        table.add_row(
            label,
            goal,
            f"{_fmt(value, 3 if unit == 'ms' else 2)} {unit}".strip(),
            "[green]pass[/]" if ok else "[red]FAIL[/]",
        )
    return table


def detail_table(result: dict[str, Any]) -> Table:
    """The baselines behind the ratios."""
    table = Table(title="baselines (same run)")
    table.add_column("what")
    table.add_column("value")
    p = result["phases"]
    rows = [
        (
            "batch: edits x concurrency, latency",
            f"{result['meta']['sizes']['batch_n']} x "
            f"{result['meta']['sizes']['batch_concurrency']}, {result['meta']['sizes']['latency']:g} s",
        ),
        (
            "batch wall: flow / raw script / ideal (s)",
            f"{_fmt(p['flow']['wall_s'], 1)} / {_fmt(p['raw']['wall_s'], 1)} / "
            f"{_fmt(result['batch_ideal_s'], 1)}",
        ),
        ("upload time in the ideal (s)", _fmt(result["batch_upload_s"])),
        (
            "CPU per edit: flow / bare client / raw (ms)",
            f"{_fmt(result['cpu_ms_per_edit_flow'], 1)} / {_fmt(result.get('cpu_ms_per_edit_client'), 1)} / "
            f"{_fmt(result['cpu_ms_per_edit_raw'], 1)}",
        ),
        (
            "CPU ms per edit of each round: flow / bare client / raw (best used)",
            " / ".join(
                ", ".join(f"{r['cpu_s'] / result['meta']['sizes']['batch_n'] * 1000:.1f}" for r in rounds)
                for rounds in (p[k].get("rounds", []) for k in ("flow", "client", "raw"))
            ),
        ),
        (
            "Prefect API server CPU per edit of the flow (ms)",
            _fmt(result.get("prefect_server_cpu_ms_per_edit"), 1),
        ),
        (
            "batch wall / ideal: bare client / raw",
            f"{_fmt(result.get('client_wall_ratio'))} / {_fmt(result.get('raw_wall_ratio'))}",
        ),
        (
            "requests per job: flow / bare client / raw script",
            f"{_fmt(result['requests_per_job'])} / "
            f"{_fmt(result.get('requests_per_job_client'))} / {_fmt(result.get('requests_per_job_raw'))}",
        ),
        (
            "eth-keys backend",
            result["eth_keys_backend"] + ("" if result["coincurve"] else " (NOT coincurve)"),
        ),
        (
            "upload: size / RSS before / peak (MB)",
            f"{_fmt(result['upload_size_mb'], 0)} / "
            f"{_fmt(result['upload_rss_baseline_mb'], 1)} / {_fmt(result['upload_rss_peak_abs_mb'], 1)}",
        ),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def scale_table(result: dict[str, Any]) -> Table:
    """Wall, CPU and RSS as concurrency grows, for the bare client and the flow."""
    table = Table(title="how cost grows with concurrency")
    for column in (
        "path",
        "edits",
        "at once",
        "job s",
        "wall s",
        "wall/ideal",
        "CPU s",
        "CPU ms/edit",
        "RSS MB",
        "peak MB",
        "req/job",
    ):
        table.add_column(column, justify="right", no_wrap=True)
    for row in result["scale_client"] + result["scale_flow"]:
        table.add_row(
            row["path"],
            str(row["edits"]),
            str(row["concurrency"]),
            f"{row['latency']:g}",
            _fmt(row["wall_s"], 1),
            _fmt(row["wall_ratio"]),
            _fmt(row["cpu_s"]),
            _fmt(row["cpu_ms_per_edit"], 1),
            _fmt(row["rss_before_mb"], 0),
            _fmt(row["rss_peak_mb"], 0),
            _fmt(row["requests_per_job"]),
        )
    return table


def print_tables(result: dict[str, Any], console: Console) -> None:
    """All three tables."""
    console.print(headline_table(result))
    console.print(detail_table(result))
    console.print(scale_table(result))


def write_json(result: dict[str, Any], directory: str = RESULTS_DIR) -> str:
    """Write the result to bench/results/<mode>-<UTC time>.json and latest-<mode>.json; return the path."""
    os.makedirs(directory, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    mode = result["meta"]["mode"]
    path = os.path.join(directory, f"{mode}-{stamp}.json")
    text = json.dumps(result, indent=2, default=str)
    for target in (path, os.path.join(directory, f"latest-{mode}.json")):
        with open(target, "w") as handle:
            handle.write(text + "\n")
    return path


def markdown(result: dict[str, Any]) -> str:
    """The headline figures and the scale rows as Markdown tables (for the README)."""
    meta = result["meta"]
    sizes = meta["sizes"]
    lines = [
        f"Measured with `python -m bench{' --quick' if meta['mode'] == 'quick' else ''}` on "
        f"{meta['cpus']} shared cores ({meta['finished_at']}); batch of {sizes['batch_n']} edits, "
        f"{sizes['batch_concurrency']} at once, jobs of {sizes['latency']:g} s "
        f"(±{sizes.get('batch_jitter', sizes['jitter']):.0%} in the batch, "
        f"±{sizes['jitter']:.0%} in the scale rows); load average at the end "
        f"{meta['load_avg_at_end'][0]:.1f}.",
        "",
        "| figure | goal | measured | |",
        "| --- | --- | --- | --- |",
    ]
    for key, label, unit, goal in HEADLINES:
        value = _fmt(result.get(key), 3 if unit == "ms" else 2)
        verdict = "pass" if result["pass"].get(key) else "**FAIL**"
        lines.append(f"| {label} | {goal} | {value} {unit} | {verdict} |".replace("  |", " |"))
    lines += [
        "",
        "| path | edits | at once | job s | wall s | wall / ideal | CPU ms per edit | RSS peak MB "
        "| requests per job |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["scale_client"] + result["scale_flow"]:
        lines.append(
            f"| {row['path']} | {row['edits']} | {row['concurrency']} | {row['latency']:g} | "
            f"{_fmt(row['wall_s'], 1)} | {_fmt(row['wall_ratio'])} | {_fmt(row['cpu_ms_per_edit'], 1)} | "
            f"{_fmt(row['rss_peak_mb'], 0)} | {_fmt(row['requests_per_job'])} |"
        )
    return "\n".join(lines) + "\n"


README_BEGIN = "<!-- bench:begin -->"
README_END = "<!-- bench:end -->"


def update_readme(result: dict[str, Any], path: str) -> None:
    """Replace the README's table (between `README_BEGIN` and `README_END`) with this result's `markdown`."""
    with open(path) as handle:
        text = handle.read()
    head, found, rest = text.partition(README_BEGIN)
    _, found_end, tail = rest.partition(README_END)
    if not found or not found_end:
        raise SystemExit(f"{path} has no {README_BEGIN} ... {README_END} block")
    with open(path, "w") as handle:
        handle.write(f"{head}{README_BEGIN}\n{markdown(result)}{README_END}{tail}")
