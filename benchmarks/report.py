"""The end-to-end run's results, gathered while the tests run and written once at the end of the
session (benchmarks/conftest.py): results/end_to_end.json (every run appended, with machine
facts), and for the latest run end_to_end.md (a table) and end_to_end.png (a chart)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from .harness import RESULTS, SMOKE, machine_info, save

RUN: defaultdict[str, dict[str, Any]] = defaultdict(dict)

TARGETS = {
    "lossless_rate_qos0": ">= 40,000 msg/s",
    "cpu_ms_per_1000": "<= 15 ms",
    "p99_ms_at_1k": "<= flush interval + 100 ms (1,100 ms)",
    "peak_rss_mb": "<= 60 MB",
    "lossless_rate_qos1": ">= half of QoS 0",
}


SECTIONS = ("lossless_rate", "burst_drain", "latency_1k", "cpu_memory", "latency_curve")


def write(out_dir: Path = RESULTS) -> list[Path]:
    """Write what this session measured; nothing if it measured nothing. Smoke runs render
    into `out_dir` (a temporary directory) so the renderers run but results/ stays as it is.
    A session that ran some of the tests appends its part; the table and chart show the
    newest measurement of each (section, QoS) over the JSON's runs."""
    if not RUN:
        return []
    result = {"smoke": SMOKE, "machine": machine_info(), **RUN}
    paths = [] if SMOKE else [save("end_to_end", result)]
    shown = result if SMOKE else merged(json.loads((RESULTS / "end_to_end.json").read_text()))
    out_dir.mkdir(exist_ok=True)
    md = out_dir / "end_to_end.md"
    md.write_text(markdown(shown))
    png = out_dir / "end_to_end.png"
    chart(shown, png)
    return [*paths, md, png]


def merged(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The newest value of every (section, QoS) over `runs`, oldest first."""
    out: dict[str, Any] = {"smoke": False, "machine": runs[-1]["machine"], "when": {}}
    for run in runs:
        for section in SECTIONS:
            for qos, value in (run.get(section) or {}).items():
                out.setdefault(section, {})[qos] = value
                out["when"][f"{section}.{qos}"] = run.get("when")
    return out


def _get(result: dict[str, Any], *keys: str) -> Any:
    value: Any = result
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    rows = []
    for qos in ("qos0", "qos1"):
        rows.append(
            (
                qos.upper().replace("QOS", "QoS "),
                _get(result, "lossless_rate", qos, "median_msg_per_s"),
                _get(result, "burst_drain", qos, "median_s"),
                _get(result, "latency_1k", qos, "p50_ms_median"),
                _get(result, "latency_1k", qos, "p99_ms_median"),
                _get(result, "cpu_memory", qos, "cpu_ms_per_1000_median"),
                _get(result, "cpu_memory", qos, "peak_rss_mb_paced_median"),
                _get(result, "cpu_memory", qos, "peak_rss_mb_burst_median"),
            )
        )
    lines = [
        "# ingestd end to end" + (" (smoke sizes: not a measurement)" if result["smoke"] else ""),
        "",
        f"{m['cpu_model']}, {m['cores']} cores"
        + (f", {m['raspberry_pi_model']}" if m["raspberry_pi_model"] else "")
        + f"; Python {m['python']}; {m['broker']}; {m['database']}; "
        + "ingestd "
        + str(m["libraries"].get("ingestd")),
        "",
        "Medians over the runs; `pytest benchmarks/test_end_to_end.py -s`.",
        "",
        "| | lossless msg/s | 100k burst stored (s) | p50 ms at 1k/s | p99 ms at 1k/s "
        "| ingestd CPU ms / 1000 msgs at 10k/s | peak RSS MB at 10k/s | peak RSS MB, 200k burst |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        "| "
        + " | ".join(
            "n/a" if v is None else f"{v:,}" if isinstance(v, (int, float)) else str(v) for v in row
        )
        + " |"
        for row in rows
    ]
    lines += ["", *reference_table(result)]
    lines += ["", "Targets: " + "; ".join(f"{k}: {v}" for k, v in TARGETS.items()), ""]
    return "\n".join(lines)


def reference_table(result: dict[str, Any]) -> list[str]:
    """ingestd's lossless rate beside the references of the same run (reference.py)."""
    lines = [
        "Lossless msg/s against the references measured in the same run (medians; the share is "
        "the median of the per-run ratios):",
        "",
        "| | ingestd | mosquitto_sub | ingestd share | paho counter | ingestd / paho |",
        "|---|---|---|---|---|---|",
    ]
    for qos in ("qos0", "qos1"):
        refs = _get(result, "lossless_rate", qos, "references") or {}
        row = [
            _get(result, "lossless_rate", qos, "median_msg_per_s"),
            _get(refs, "mosquitto_sub", "median_msg_per_s"),
            _get(refs, "mosquitto_sub", "ingestd_share_median"),
            _get(refs, "paho", "median_msg_per_s"),
            _get(refs, "paho", "ingestd_share_median"),
        ]
        cells = ["n/a" if v is None else f"{v:,}" for v in row]
        lines.append(f"| {qos.upper().replace('QOS', 'QoS ')} | " + " | ".join(cells) + " |")
    return lines


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for qos, marker in (("qos0", "o"), ("qos1", "s")):
        probes = _get(result, "lossless_rate", qos, "probes") or []
        seconds = _get(result, "lossless_rate", qos, "probe_seconds") or 0
        points = sorted(
            (
                p["offered_rate"],
                p["stored_rate"],
                p["lossless"]
                and p["settle_s"] <= 2.0
                and p["published"] >= 0.95 * p["offered_rate"] * seconds,
            )
            for p in probes
        )
        if points:
            left.scatter(
                [p[0] for p in points],
                [p[1] for p in points],
                marker=marker,
                c=["tab:green" if p[2] else "tab:red" for p in points],
                label=f"{qos.upper().replace('QOS', 'QoS ')} (red: lost or fell behind)",
            )
    top = max([left.get_xlim()[1], 1.0])
    left.plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle=":")
    left.set_xlabel("offered msg/s")
    left.set_ylabel("stored msg/s")
    left.set_title("Throughput against offered load")
    left.legend(fontsize=8)
    curve = _get(result, "latency_curve", "qos0") or []
    if curve:
        rates = [c["offered_rate"] for c in curve]
        right.plot(rates, [c.get("p50_ms", 0) for c in curve], marker="o", label="p50")
        right.plot(rates, [c.get("p99_ms", 0) for c in curve], marker="o", label="p99")
    right.axhline(
        1100, color="grey", linewidth=0.8, linestyle=":", label="target p99 (1 s + 100 ms)"
    )
    right.set_xlabel("offered msg/s (QoS 0)")
    right.set_ylabel("publish to stored, ms")
    right.set_title("Latency against offered load (flush 1 s)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_latest(path: Path = RESULTS / "end_to_end.json") -> dict[str, Any]:
    runs: list[dict[str, Any]] = json.loads(path.read_text())
    return runs[-1]
