"""PNG plots of the scale and latency sections (matplotlib, a dev dependency).

Written next to report.md (``scale.png``, ``latency.png``) and linked from it. Without
matplotlib the plots are skipped and the report says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RSS_TARGET_MB = 150
STATE_TARGET_BYTES = 64 * 1024


def _pyplot() -> Any:
    try:
        import matplotlib  # noqa: PLC0415 - optional

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    return plt


def scale_plot(results: dict[str, Any], out: Path) -> Path | None:
    """Peak RSS and largest STATE line against rows (log x), one line per job and run."""
    jobs = [j for j in results.get("scale", []) if j.get("full")]
    plt = _pyplot()
    if plt is None or not jobs:
        results.setdefault("plots", {})["scale"] = None if plt else "matplotlib missing"
        return None
    fig, (ax_rss, ax_state) = plt.subplots(1, 2, figsize=(11, 4.2))
    series: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for j in jobs:
        for phase in ("full", "reconcile"):
            run = j.get(phase)
            if not run or not run.get("ok"):
                continue
            key = ("candidates" if j["job"] == "candidates" else "applications + history", phase)
            series.setdefault(key, []).append(
                (
                    j["parent_rows"],
                    run.get("max_rss_mb") or 0.0,
                    (run.get("state_lines") or {}).get("max_bytes") or 0,
                )
            )
    styles = {"full": "-o", "reconcile": "--s"}
    for (job, phase), points in sorted(series.items()):
        points.sort()
        xs = [p[0] for p in points]
        ax_rss.plot(xs, [p[1] for p in points], styles[phase], label=f"{job}, {phase}")
        ax_state.plot(xs, [p[2] for p in points], styles[phase], label=f"{job}, {phase}")
    ax_rss.axhline(RSS_TARGET_MB, color="red", linestyle=":", label="target 150 MB")
    ax_state.axhline(STATE_TARGET_BYTES, color="red", linestyle=":", label="target 64 KB")
    ax_rss.set(
        xscale="log",
        xlabel="rows of the parent list (candidates or applications)",
        ylabel="tap peak RSS (MB)",
        title="Peak RSS of the tap process",
    )
    ax_rss.set_ylim(bottom=0)
    ax_state.set(
        xscale="log",
        yscale="log",
        xlabel="rows of the parent list",
        ylabel="largest STATE line (bytes)",
        title="Largest STATE message",
    )
    for ax in (ax_rss, ax_state):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(plt, fig, out, "scale", results)


def latency_plot(results: dict[str, Any], out: Path) -> Path | None:
    """Budget utilisation against added latency, with Airbyte's sequential rate."""
    lat = results.get("latency") or {}
    rows = [r for r in lat.get("rows", []) if r.get("utilisation") is not None]
    plt = _pyplot()
    if plt is None or not rows:
        results.setdefault("plots", {})["latency"] = None if plt else "matplotlib missing"
        return None
    rows.sort(key=lambda r: r["latency_ms"])
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    xs = [r["latency_ms"] for r in rows]
    ax.plot(xs, [100 * r["utilisation"] for r in rows], "-o", label="tap-ashby (wall)")
    if all(r.get("utilisation_sync") for r in rows):
        ax.plot(
            xs,
            [100 * r["utilisation_sync"] for r in rows],
            "--o",
            alpha=0.6,
            label="tap-ashby (sync time, start-up excluded)",
        )
    airbyte = 100 * lat.get("airbyte_req_per_s", 1.31) / 15
    ax.axhline(
        airbyte,
        color="grey",
        linestyle=":",
        label=f"Airbyte, sequential 1.31 req/s ({airbyte:.0f}%)",
    )
    ax.axhline(100, color="red", linestyle=":", label="budget: 900 req/min")
    ax.set(
        xlabel="added latency per request (ms)",
        ylabel="budget utilisation (%)",
        title=f"Default full sync, {lat.get('candidates')} candidates",
        ylim=(0, 110),
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return _save(plt, fig, out, "latency", results)


def _save(plt: Any, fig: Any, out: Path, name: str, results: dict[str, Any]) -> Path:
    """Write ``<name>.png`` and record it in the results."""
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    results.setdefault("plots", {})[name] = path.name
    return path
