"""The report's figures: quality per generation, the Pareto front, and the picture strip (degraded
input, classical DIP, best found, ground truth). Drawn with matplotlib's object API on the Agg canvas
(no display, no global backend).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .rundata import Run, classical_record

BLUE, GREY, RED, GREEN, INK = "#1f6feb", "#8c959f", "#cf222e", "#2da44e", "#24292f"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#d0d7de")
    ax.tick_params(colors="#57606a", labelsize=9)
    ax.grid(True, color="#eaeef2", linewidth=0.8)
    ax.set_axisbelow(True)


def _save(fig, path: Path) -> None:
    """Write a PNG atomically (a browser refreshing the report never sees half a picture)."""
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, format="png", facecolor="white", bbox_inches="tight")
    os.replace(tmp, path)


def fitness_figure(run: Run, path: Path, baseline: dict | None) -> None:
    """Best and mean quality per generation (with the population's range), and fits vs cache hits."""
    rows = run.logbook
    gens = [r["gen"] for r in rows]
    fig = _figure(8.6, 4.6)
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.12)
    ax, bars = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    q_max = [r.get("quality_max") for r in rows]
    q_mean = [r.get("quality_mean") for r in rows]
    q_min = [r.get("quality_min") for r in rows]
    ax.fill_between(gens, q_min, q_max, color=BLUE, alpha=0.08, linewidth=0, label="population range")
    ax.plot(gens, np.maximum.accumulate(q_max), color=BLUE, linewidth=2.4, marker="o", markersize=5,
            label="best so far")
    ax.plot(gens, q_mean, color=GREY, linewidth=1.8, marker="o", markersize=4, label="population mean")
    if run.mode == "blind" and any("true_psnr_max" in r for r in rows):
        ax.plot(gens, [r.get("true_psnr_max", np.nan) for r in rows], color=GREEN, linewidth=1.5,
                linestyle="--", label="best true PSNR (not used)")
    if baseline and baseline.get("source") == "search fit" and baseline.get("fitness"):
        ax.axhline(baseline["fitness"][0], color=RED, linestyle=":", linewidth=1.6,
                   label="classical DIP (search fit)")
    ax.set_ylabel(run.quality_label, color=INK, fontsize=10)
    ax.legend(frameon=False, fontsize=9, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=4)
    ax.tick_params(labelbottom=False)
    _style(ax)
    fits = np.array([r.get("fits", 0) for r in rows])
    hits = np.array([r.get("cache_hits", 0) for r in rows])
    bars.bar(gens, fits, color=BLUE, alpha=0.75, width=0.6, label="fits run")
    bars.bar(gens, hits, bottom=fits, color=GREEN, alpha=0.75, width=0.6, label="cache hits")
    bars.set_ylim(0, max(1, int((fits + hits).max(initial=0))) * 1.6)  # room for the legend
    bars.set_xlabel("generation", color=INK, fontsize=10)
    bars.set_ylabel("evaluations", color=INK, fontsize=9)
    bars.legend(frameon=False, fontsize=8, loc="upper right", ncol=2)
    for a in (ax, bars):
        a.set_xticks(gens)
        a.set_xlim(min(gens) - 0.5, max(gens) + 0.5)
    _style(bars)
    bars.grid(False, axis="x")
    _save(fig, path)


def pareto_figure(run: Run, path: Path) -> None:
    """Quality against cost: every evaluated architecture, the Pareto front highlighted, classical DIP marked."""
    cost = run.objectives[1] if len(run.objectives) > 1 else "parameters"
    fig = _figure(8.6, 4.4)
    ax = fig.add_subplot()
    points = [(e["objectives"][cost], e["objectives"]["quality"]) for e in run.evaluations
              if e.get("error") is None and isinstance(e.get("objectives"), dict)
              and e["objectives"].get(cost) is not None and e["objectives"].get("quality") is not None]
    if points:
        xs, ys = zip(*points)
        ax.scatter(xs, ys, s=22, color=GREY, alpha=0.45, linewidth=0, label="evaluated")
    front = sorted((e["objectives"][cost], e["objectives"]["quality"]) for e in run.archive
                   if isinstance(e.get("objectives"), dict) and e["objectives"].get(cost) is not None)
    if front:
        xs, ys = zip(*front)
        ax.step(xs, ys, where="post", color=BLUE, linewidth=1.6, alpha=0.8)
        ax.scatter(xs, ys, s=46, color=BLUE, zorder=3, edgecolor="white", linewidth=0.8, label="Pareto front")
    classical = classical_record(run)
    if classical is not None and classical.get("objectives", {}).get(cost) is not None:
        ax.scatter([classical["objectives"][cost]], [classical["objectives"]["quality"]], s=70, marker="D",
                   color=RED, zorder=4, edgecolor="white", linewidth=0.8, label="classical DIP")
    if cost == "parameters":
        ax.set_xscale("log")
    ax.set_xlabel("network parameters (fewer is better)" if cost == "parameters" else
                  "fit seconds (fewer is better)", color=INK, fontsize=10)
    ax.set_ylabel(run.quality_label, color=INK, fontsize=10)
    ax.legend(frameon=False, fontsize=9, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3)
    _style(ax)
    _save(fig, path)


def strip_panels(run: Run, baseline: dict | None) -> list[dict]:
    """The side-by-side pictures: degraded, classical DIP (when scored), best found, ground truth."""
    degraded = run.config.get("degraded") or {}
    panels = [{"title": "degraded input", "picture": run.picture("degraded.png"), "metrics": degraded}]
    if baseline:
        picture = run.picture(baseline["picture"]) if baseline.get("picture") else None
        kept = "score of its search fit\n(--baseline-fit draws it)" if baseline.get("source") == "search fit" \
            else "score of its final fits\nwithout the search fits"
        note = None if picture else f"picture not kept:\n{kept}"
        panels.append({"title": f"classical DIP ({baseline.get('source', '')})", "picture": picture,
                       "metrics": baseline, "note": note})
    final = (run.best or {}).get("final")
    if final is not None:
        panels.append({"title": "best found (restoration)",
                       "picture": run.picture(final.get("picture", "restored.png")), "metrics": final})
    if run.picture("clean.png"):
        panels.append({"title": "ground truth", "picture": run.picture("clean.png"), "metrics": {}})
    return panels


def _caption(metrics: dict, title: str) -> str:
    if title == "ground truth":
        return "reference"
    if metrics.get("psnr") is not None:
        ssim = metrics.get("ssim")
        return f"PSNR {metrics['psnr']:.2f} dB\nSSIM {ssim:.3f}" if ssim is not None else f"PSNR {metrics['psnr']:.2f} dB"
    if metrics.get("heldout_psnr") is not None:
        return f"held-out PSNR {metrics['heldout_psnr']:.2f} dB\n(no ground truth)"
    return "no ground truth"


def strip_figure(panels: list[dict], path: Path) -> None:
    from PIL import Image

    fig = _figure(2.6 * len(panels), 3.5)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        if panel["picture"] is not None:
            with Image.open(panel["picture"]) as img:
                pixels = np.asarray(img.convert("RGB") if img.mode not in ("L", "RGB") else img)
            ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=255,
                      interpolation="nearest")
        else:
            ax.set_facecolor("#f6f8fa")
            ax.text(0.5, 0.5, panel.get("note") or "no picture", ha="center", va="center", fontsize=8.5,
                    color="#57606a", transform=ax.transAxes)
            ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("#d0d7de")
        ax.set_title(panel["title"], fontsize=10, color=INK, pad=6)
        ax.set_xlabel(_caption(panel["metrics"], panel["title"]), fontsize=10, color=INK, labelpad=6)
    fig.subplots_adjust(wspace=0.08)
    _save(fig, path)


