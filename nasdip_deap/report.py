"""``nasdip report RUN_DIR``: one self-contained HTML page and PNG figures for a search run.

It reads only the run folder's JSON files and pictures (config.json, logbook.json, hall_of_fame.json
or pareto_front.json, best.json, evaluations.jsonl, *.png), so it works on a finished run, on a run
still in progress (before best.json exists) and on a copy of a run folder on another machine.
Figures are drawn with matplotlib's object API on the Agg canvas (no display, no global backend).
"""
from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path

import numpy as np

from . import __version__
from .errors import UserError
from .genome import classical_dip
from .runfolder import read_json

FIGURES = "figures"
BLUE, GREY, RED, GREEN, INK = "#1f6feb", "#8c959f", "#cf222e", "#2da44e", "#24292f"


# -- reading the run folder -----------------------------------------------------------------------
def _optional_json(path: Path):
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _jsonl(path: Path) -> list[dict]:
    """The readable lines of a JSON-lines file (a kill mid-append can leave a broken last line)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


class Run:
    """What the report needs from a run folder; missing optional files become None or []."""

    def __init__(self, run_dir: Path):
        if not run_dir.is_dir():
            raise UserError(f"{str(run_dir)!r} is not a run folder (no such folder)")
        if not (run_dir / "config.json").exists():
            raise UserError(f"{str(run_dir)!r} is not a search run folder: it has no config.json")
        self.dir = run_dir
        self.config = read_json(run_dir / "config.json", "run settings")
        if not isinstance(self.config, dict) or self.config.get("command") != "search":
            raise UserError(f"{str(run_dir / 'config.json')!r} is not the config of a `nasdip search` run")
        logbook = _optional_json(run_dir / "logbook.json")
        self.logbook = [row for row in logbook if isinstance(row, dict)] if isinstance(logbook, list) else []
        self.multi_objective = (run_dir / "pareto_front.json").exists()
        archive = _optional_json(run_dir / ("pareto_front.json" if self.multi_objective else "hall_of_fame.json"))
        self.archive = [e for e in archive if isinstance(e, dict)] if isinstance(archive, list) else []
        best = _optional_json(run_dir / "best.json")
        self.best = best if isinstance(best, dict) else None
        self.evaluations = _jsonl(run_dir / "evaluations.jsonl")
        fitness = self.config.get("fitness", {}).get("settings", {})
        self.mode = fitness.get("mode", "reference")
        self.objectives = list(fitness.get("objectives", ["quality"]))
        self.arguments = self.config.get("arguments") or {}

    @property
    def name(self) -> str:
        return self.dir.resolve().name

    @property
    def quality_label(self) -> str:
        return "held-out PSNR (dB, blind)" if self.mode == "blind" else "PSNR vs ground truth (dB)"

    def best_entry(self) -> dict | None:
        if self.best is not None:
            return self.best
        return max(self.archive, key=lambda e: e["fitness"][0]) if self.archive else None

    def picture(self, name: str) -> Path | None:
        path = self.dir / name
        return path if path.exists() else None


# -- figures --------------------------------------------------------------------------------------
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
    classical = _classical_record(run)
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
        note = None if picture else "picture not kept:\nscore of its search fit\n(--baseline-fit draws it)"
        panels.append({"title": f"classical DIP ({baseline.get('source', '')})", "picture": picture,
                       "metrics": baseline, "note": note})
    final = (run.best or {}).get("final")
    if final is not None:
        panels.append({"title": "best found (final fit)", "picture": run.picture(final.get("picture", "restored.png")),
                       "metrics": final})
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


# -- HTML -----------------------------------------------------------------------------------------
def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "—"
    return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _table(header: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kv_table(pairs: list[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(v))}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def architecture_html(arch: dict) -> str:
    """Per-level blocks, the skip matrix and the meta-parameters (beside classical DIP's)."""
    levels = len(arch["encoders"])
    rows = []
    for n, (enc, dec) in enumerate(zip(arch["encoders"], arch["decoders"])):
        into = [s for s in arch["skips"] if s["target"] == n]
        rows.append([f"<b>{n}</b>", f"{enc['channels']}", f"{enc['kernel']}&times;{enc['kernel']}",
                     _e(enc["downsample"]), "yes" if enc["second_conv"] else "no",
                     f"{dec['channels']}", f"{dec['kernel']}&times;{dec['kernel']}", _e(dec["upsample"]),
                     "yes" if dec["conv1x1"] else "no",
                     _e(", ".join(f"from {s['source']} ({s['channels']} ch)" for s in into) or "none")])
    blocks = _table(["level", "enc ch", "enc kernel", "down", "2nd conv", "dec ch", "dec kernel", "up",
                     "1×1 conv", "skips in"], rows, "arch")
    gates = {(s["source"], s["target"]): s["channels"] for s in arch["skips"]}
    matrix = ['<table class="matrix"><thead><tr><th>source \\ target</th>']
    matrix += [f"<th>dec {m}</th>" for m in range(levels)] + ["</tr></thead><tbody>"]
    for n in range(levels):
        matrix.append(f"<tr><th>enc {n}</th>")
        for m in range(levels):
            ch = gates.get((n, m))
            matrix.append(f'<td class="on">{ch}</td>' if ch else '<td class="off">·</td>')
        matrix.append("</tr>")
    matrix.append("</tbody></table>")
    classical = classical_dip(levels).to_dict()
    meta_rows = []
    for key, label in (("learning_rate", "learning rate"), ("input_depth", "input depth z"),
                       ("reg_noise_std", "input noise std"), ("activation", "activation"),
                       ("iterations_fraction", "share of iterations"), ("padding", "padding")):
        value, ref = arch.get(key), classical.get(key)
        mark = "" if value == ref or (key == "iterations_fraction" and value in (None, 1.0)) else ' class="diff"'
        meta_rows.append([_e(label), f"<span{mark}>{_e(_fmt(value))}</span>", _e(_fmt(ref))])
    meta = _table(["meta-parameter", "best found", "classical DIP"], meta_rows, "meta")
    return (f'<div class="arch-grid"><div>{blocks}</div></div>'
            f'<div class="arch-grid two"><div><h3>Skip connections (channels)</h3>{"".join(matrix)}</div>'
            f"<div><h3>Meta-parameters</h3>{meta}</div></div>")


def archive_html(run: Run) -> str:
    rows = []
    for i, e in enumerate(sorted(run.archive, key=lambda e: -e["fitness"][0])[:10], 1):
        m = e.get("metrics") or {}
        rows.append([str(i), f"{e['fitness'][0]:.3f}", _e(_fmt(m.get("psnr"))), _e(_fmt(m.get("ssim"))),
                     _e(f"{e['parameters']:,}" if isinstance(e.get("parameters"), int) else "—"),
                     _e(e.get("generation_born", "—")), f"<code>{_e(e.get('summary', ''))}</code>"])
    quality = "held-out PSNR" if run.mode == "blind" else "PSNR"
    return _table(["#", f"fitness ({quality})", "PSNR", "SSIM", "parameters", "born", "architecture"], rows,
                  "archive")


def finalists_html(finalists: list[dict], quality: str) -> str:
    """The re-fitted finalists (``--finalists``): every score, its mean (what the choice rests on)."""
    rows = []
    for i, f in enumerate(finalists, 1):
        scores = ", ".join(f"{v:.2f}" for v in f["scores"])
        true = [t for t in f.get("true_psnr") or [] if t is not None]
        rows.append([str(i), _e(scores), f"<b>{f['mean']:.3f}</b>",
                     _e(f"{sum(true) / len(true):.2f}" if true else "—"), f"<code>{_e(f['summary'])}</code>"])
    return _table(["#", f"{quality}: search fit, re-fits", "mean", "true PSNR (mean)", "architecture"], rows,
                  "archive")


def compute_summary(run: Run) -> list[tuple[str, object]]:
    """Fits, DIP iterations, CPU/GPU seconds, cache hits: from the logbook and the fit records."""
    rows = run.logbook
    seconds = {"cpu": 0.0, "gpu": 0.0}
    for e in run.evaluations:
        seconds["gpu" if str(e.get("device", "cpu")).startswith("cuda") else "cpu"] += float(e.get("seconds") or 0)
    finals = [x for x in ((run.best or {}).get("final"), (run.best or {}).get("baseline")) if x and "seconds" in x
              and str(x.get("source", "final")).startswith("final")]
    final_seconds = sum(float(x["seconds"]) for x in finals)
    refits = [r for f in (run.best or {}).get("finalists") or [] for r in f["scores"][1:]]
    return [("generations", len(rows)),
            ("fits run (DIP trainings)", sum(r.get("fits", 0) for r in rows)),
            ("DIP iterations in those fits", f"{sum(r.get('iterations', 0) for r in rows):,}"),
            ("cache hits (scores reused, not retrained)", sum(r.get("cache_hits", 0) for r in rows)),
            ("duplicates within a generation (trained once)", sum(r.get("duplicates", 0) for r in rows)),
            ("failed fits (scored worst)", sum(r.get("failures", 0) for r in rows)),
            ("fit time on CPU", _duration(seconds["cpu"])),
            ("fit time on GPU", _duration(seconds["gpu"]) if seconds["gpu"] else "none"),
            ("re-fits of the finalists (--finalists)", len(refits) if refits else "—"),
            ("final fit(s)", f"{len(finals)}, {_duration(final_seconds)}" if finals else "—"),
            ("wall time of the generations", _duration(sum(r.get("seconds", 0.0) for r in rows)))]


def _other_tasks_options(task: str) -> set[str]:
    """Option names that only other tasks use (the parser holds every task's options)."""
    import argparse

    from .registry import TASKS

    mine, others = set(), set()
    for entry in TASKS.entries():
        parser = argparse.ArgumentParser(add_help=False)
        entry.obj.add_arguments(parser)
        (mine if entry.name == task else others).update(a.dest for a in parser._actions)
    return others - mine


def settings_pairs(run: Run) -> list[tuple[str, object]]:
    """The command line the run was made with (options left unset and other tasks' options omitted)."""
    args = run.arguments
    if not args:  # a run folder from before settings were saved: what config.json says
        keys = ("image", "observed", "clean", "crop", "population", "generations", "seed", "hof_size",
                "seed_classical")
        return [(k, run.config.get(k)) for k in keys] + [("algorithm", run.config.get("algorithm"))]
    skip = {"command", "given_options", "quiet", "verbose", "force", "out", "resume"}
    skip |= _other_tasks_options(str(args.get("task", "")))
    return [(f"--{k.rstrip('_').replace('_', '-')}", v) for k, v in sorted(args.items())
            if k not in skip and v is not None]


def _card(label: str, value: str, note: str = "", cls: str = "") -> str:
    return (f'<div class="card {cls}"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>'
            f'<div class="note">{_e(note)}</div></div>')


def _comparison(run: Run, baseline: dict, final: dict) -> str:
    """Whether the two PSNRs are like for like: a reference-mode search fit is the same fit (same
    seed, all pixels) as a final fit with the same iterations; a blind one trained without the
    held-out pixels."""
    if baseline.get("iterations") != final.get("iterations"):
        return "different budgets"
    if str(baseline.get("source", "")).startswith("final") or run.mode == "reference":
        return "same budget"
    return "vs its search fit (held-out pixels unseen)"


def cards_html(run: Run, baseline: dict | None) -> str:
    final = (run.best or {}).get("final") or {}
    degraded = run.config.get("degraded") or {}
    cards = []
    if final.get("psnr") is not None:
        cards.append(_card("best found", f"{final['psnr']:.2f} dB", f"SSIM {final.get('ssim', float('nan')):.3f}, "
                           f"{final.get('iterations', '?')} iterations", "accent"))
    elif run.best_entry() is not None:
        cards.append(_card("best fitness", f"{run.best_entry()['fitness'][0]:.2f}", run.quality_label, "accent"))
    if baseline and baseline.get("psnr") is not None:
        cards.append(_card("classical DIP", f"{baseline['psnr']:.2f} dB",
                           f"{baseline.get('source', '')}, {baseline.get('iterations', '?')} iterations"))
        if final.get("psnr") is not None:
            gain = final["psnr"] - baseline["psnr"]
            cards.append(_card("gain over classical", f"{gain:+.2f} dB", _comparison(run, baseline, final),
                               "good" if gain > 0 else "bad"))
    if degraded.get("psnr") is not None:
        cards.append(_card("degraded input", f"{degraded['psnr']:.2f} dB", f"SSIM {degraded.get('ssim', 0):.3f}"))
    rows = run.logbook
    cards.append(_card("evaluations", f"{sum(r.get('fits', 0) for r in rows)} fits",
                       f"{sum(r.get('cache_hits', 0) for r in rows)} cache hits"))
    return f'<div class="cards">{"".join(cards)}</div>'


CSS = """
:root { --ink:#24292f; --muted:#57606a; --line:#d0d7de; --soft:#f6f8fa; --blue:#1f6feb; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
       color:var(--ink); background:#eef1f4; }
main { max-width:1040px; margin:24px auto; background:#fff; border:1px solid var(--line); border-radius:10px;
       padding:28px 36px 36px; }
header h1 { margin:0; font-size:26px; letter-spacing:-.01em; }
header .sub { color:var(--muted); margin-top:4px; }
h2 { font-size:18px; margin:34px 0 10px; padding-bottom:6px; border-bottom:1px solid var(--line); }
h3 { font-size:14px; margin:16px 0 6px; color:var(--muted); font-weight:600; }
p.hint { color:var(--muted); font-size:13px; margin:4px 0 10px; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin-top:20px; }
.card { flex:1 1 150px; border:1px solid var(--line); border-radius:8px; padding:10px 14px; background:var(--soft); }
.card .label { font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
.card .value { font-size:24px; font-weight:650; margin-top:2px; }
.card .note { font-size:12px; color:var(--muted); }
.card.accent { background:#ddf4ff; border-color:#9fd2ff; }
.card.good .value { color:#1a7f37; } .card.bad .value { color:#cf222e; }
figure { margin:8px 0; } figure img { max-width:100%; display:block; margin:auto; }
table { border-collapse:collapse; font-size:13px; width:100%; }
th, td { padding:5px 8px; border-bottom:1px solid #eaeef2; text-align:left; vertical-align:top; }
thead th { background:var(--soft); border-bottom:1px solid var(--line); font-weight:600; }
table.kv th { width:40%; font-weight:500; color:var(--muted); }
table.arch td, table.matrix td { text-align:center; } table.arch td:last-child { text-align:left; }
table.matrix { width:auto; } table.matrix td { min-width:46px; font-variant-numeric:tabular-nums; }
table.matrix td.on { background:#ddf4ff; color:#0550ae; font-weight:600; } table.matrix td.off { color:#afb8c1; }
span.diff { background:#fff8c5; padding:0 4px; border-radius:3px; }
code, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12px;
              overflow-wrap:anywhere; }
table.archive td:last-child { font-size:11px; color:#424a53; }
.arch-grid.two { display:grid; grid-template-columns:auto 1fr; gap:28px; }
.grid2 { display:grid; grid-template-columns:1fr 1fr; gap:28px; }
.summary { background:var(--soft); border:1px solid var(--line); border-radius:6px; padding:8px 12px; }
.warn { background:#fff8c5; border:1px solid #d4a72c; border-radius:6px; padding:8px 12px; margin-top:16px; }
footer { margin-top:30px; color:var(--muted); font-size:12px; }
"""


def render_html(run: Run, figures: dict[str, str], baseline: dict | None) -> str:
    config = run.config
    task = config.get("task") or {}
    task_text = ", ".join(f"{k} {v}" for k, v in task.items() if k != "task")
    algorithm = (config.get("algorithm") or {}).get("name", "?")
    image = config.get("observed") or config.get("image") or "scikit-image astronaut"
    sub = (f"{task.get('task', '?')}{' (' + task_text + ')' if task_text else ''} · {Path(str(image)).name}"
           f"{', crop ' + str(config['crop']) + ' px' if config.get('crop') else ''} · {algorithm}, population "
           f"{config.get('population')}, {config.get('generations')} generations · {run.mode} fitness · "
           f"seed {config.get('seed')}")
    parts = [f"<header><h1>NAS-DIP search · {_e(run.name)}</h1><div class='sub'>{_e(sub)}</div></header>",
             cards_html(run, baseline)]
    if run.best is None:
        parts.append("<div class='warn'>This run has not finished (no best.json yet): the report shows the "
                     "generations done so far and no final fit.</div>")
    if "strip" in figures:
        parts.append("<h2>Pictures</h2><p class='hint'>Degraded input, classical DIP, the best architecture's "
                     "final fit and the ground truth, with PSNR/SSIM against the ground truth when it is "
                     "known.</p>" f"<figure><img src='{figures['strip']}' alt='side-by-side pictures'></figure>")
    if "fitness" in figures:
        parts.append(f"<h2>Fitness per generation</h2><p class='hint'>Fitness is {_e(run.quality_label)}; the "
                     "band is the population's range. Bars: architectures trained vs scores taken from the "
                     f"evaluation cache.</p><figure><img src='{figures['fitness']}' alt='fitness per generation'>"
                     "</figure>")
    if "pareto" in figures:
        parts.append("<h2>Pareto front</h2><p class='hint'>Restoration quality against network cost; blue "
                     f"points are not dominated by any other.</p><figure><img src='{figures['pareto']}' "
                     "alt='Pareto front'></figure>")
    entry = run.best_entry()
    if entry is not None and isinstance(entry.get("architecture"), dict):
        params = entry.get("parameters")
        parts.append("<h2>Best architecture</h2>"
                     f"<p class='summary mono'>{_e(entry.get('summary', ''))}</p>"
                     f"<p class='hint'>{_e(f'{params:,} parameters' if isinstance(params, int) else '')}"
                     f" · born in generation {_e(entry.get('generation_born', '?'))} · key "
                     f"<code>{_e(entry.get('key', ''))}</code>. Highlighted meta-parameters differ from "
                     f"classical DIP.</p>{architecture_html(entry['architecture'])}")
    if run.archive:
        title = "Pareto front" if run.multi_objective else "Hall of fame"
        parts.append(f"<h2>{title}</h2>{archive_html(run)}")
    finalists = (run.best or {}).get("finalists")
    if finalists:
        parts.append("<h2>Finalists</h2><p class='hint'>The best architectures were fitted again with new seeds"
                     f"{' and new held-out pixels' if run.mode == 'blind' else ''}; the best mean was "
                     f"chosen. True PSNR is shown where the clean image is known (never used by blind "
                     f"fitness).</p>{finalists_html(finalists, run.quality_label)}")
    parts.append(f"<div class='grid2'><div><h2>Compute spent</h2>{_kv_table(compute_summary(run))}</div>"
                 f"<div><h2>Settings</h2>{_kv_table(settings_pairs(run))}</div></div>")
    env = config.get("environment") or {}
    parts.append(f"<footer>nasdip-deap {_e(__version__)} · report written {_e(time.strftime('%Y-%m-%d %H:%M'))}"
                 f" · run made with torch {_e(env.get('torch', '?'))} on {_e(env.get('platform', '?'))}"
                 f" · results: best.json, hall_of_fame.json / pareto_front.json, logbook.json, "
                 f"evaluations.jsonl</footer>")
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>NAS-DIP report · {_e(run.name)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")


def _classical_record(run: Run) -> dict | None:
    """Classical DIP's search fit in evaluations.jsonl (individual 0 of the first population)."""
    levels = (run.config.get("spec") or {}).get("levels", 5)
    classical = json.loads(classical_dip(levels).to_json())  # lists, as in the JSON records
    for e in run.evaluations:
        arch = dict(e.get("architecture") or {})
        if arch.get("iterations_fraction") == 1.0:  # a spec that evolves T encodes classical DIP with 1.0
            arch["iterations_fraction"] = None
        if arch == classical and e.get("error") is None:
            return e
    return None


def baseline_of(run: Run) -> dict | None:
    """Classical DIP's result: from best.json, or (unfinished runs) its search fit in evaluations.jsonl."""
    if run.best is not None:
        return run.best.get("baseline")
    e = _classical_record(run)
    if e is None:
        return None
    return {"label": "classical DIP", "source": "search fit", "picture": None, "iterations": e.get("iterations"),
            "fitness": e.get("fitness"), **(e.get("metrics") or {})}


def write_report(run_dir: str | os.PathLike) -> Path:
    """Write ``RUN_DIR/report.html`` and its figures in ``RUN_DIR/figures/``; returns the page's path."""
    run = Run(Path(run_dir))
    folder = run.dir / FIGURES
    folder.mkdir(exist_ok=True)
    baseline = baseline_of(run)
    figures: dict[str, str] = {}
    panels = strip_panels(run, baseline)
    if any(p["picture"] is not None for p in panels):
        strip_figure(panels, folder / "strip.png")
        figures["strip"] = f"{FIGURES}/strip.png"
    if run.logbook:
        fitness_figure(run, folder / "fitness.png", baseline)
        figures["fitness"] = f"{FIGURES}/fitness.png"
    if run.multi_objective and (run.archive or run.evaluations):
        pareto_figure(run, folder / "pareto.png")
        figures["pareto"] = f"{FIGURES}/pareto.png"
    page = run.dir / "report.html"
    tmp = page.with_name(".report.html.tmp")
    tmp.write_text(render_html(run, figures, baseline))
    os.replace(tmp, page)
    return page
