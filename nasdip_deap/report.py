"""``nasdip report RUN_DIR``: one self-contained HTML page (this module) with PNG figures
(``figures.py``) from the run folder's data (``rundata.py``).
"""
from __future__ import annotations

import html
import os
import time
from pathlib import Path

from . import __version__
from .genome import classical_dip
from .figures import fitness_figure, pareto_figure, strip_figure, strip_panels
from .fitness import SELECTED_WITH
from .rundata import Run, baseline_of

FIGURES = "figures"


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


def predictor_html(run: Run) -> str:
    """Per generation of a predictor-guided run: children bred and new, the model's seconds, and how well it
    predicted the children it chose (mean absolute error, Kendall's tau, predicted against measured)."""
    rows = [[_fmt(row.get(name)) for name in ("gen", "predictor_candidates", "fits", "predictor_mae", "predictor_tau",
                                              "predictor_seconds")]
            for row in run.logbook if "predictor_candidates" in row]
    if not rows:
        return ""
    return ("<h2>Predictor</h2><p class='hint'>Each generation many more children were bred than fitted; a model "
            "of the run's records chose which to fit. Its error is predicted against measured fitness of the "
            "children it chose (each record's <code>prediction</code> in evaluations.jsonl).</p>"
            + _table(["generation", "new children ranked", "fits", "mean abs. error", "Kendall tau", "model s"],
                     rows))


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
            ("children varied again (their architecture was already fitted)", sum(r.get("revaried", 0) for r in rows)),
            ("distinct architectures fitted, per generation", ", ".join(str(r.get("fits", 0)) for r in rows) or "—"),
            ("failed fits (scored worst)", sum(r.get("failures", 0) for r in rows)),
            ("fit time on CPU", _duration(seconds["cpu"])),
            ("fit time on GPU", _duration(seconds["gpu"]) if seconds["gpu"] else "none"),
            ("re-fits of the finalists (--finalists)", len(refits) if refits else "—"),
            ("final fit(s)", f"{sum(int(x.get('ensemble', 1)) for x in finals)}, {_duration(final_seconds)}"
             if finals else "—"),
            ("wall time of the generations", _duration(sum(r.get("seconds", 0.0) for r in rows)))]


def _other_tasks_options(task: str) -> set[str]:
    """Option names that only other tasks declare."""
    from .registry import TASKS

    mine, others = set(), set()
    for entry in TASKS.entries():
        (mine if entry.name == task else others).update(o.name for o in entry.obj.OPTIONS)
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
           f"{config.get('population')}, {config.get('generations')} generations · selected with "
           f"{SELECTED_WITH.get(run.mode, run.mode + ' fitness')} · "
           f"seed {config.get('seed')}")
    parts = [f"<header><h1>NAS-DIP search · {_e(run.name)}</h1><div class='sub'>{_e(sub)}</div></header>",
             cards_html(run, baseline)]
    if run.mode == "reference":
        parts.append("<div class='warn'>Selected with ground truth: this search ran with --fitness reference, so "
                     "the clean image chose the architectures (an oracle, for benchmarks). Its PSNR is not that of "
                     "a restoration without ground truth.</div>")
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
    parts.append(predictor_html(run))
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
