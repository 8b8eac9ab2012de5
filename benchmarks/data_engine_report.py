"""benchmarks/data_engine_experiment.py's report: per kind, held-out PSNR and psnr_obj as mean +- std over
seeds, the paired difference to the control, each arm's cost; DIR/experiment.json and a Markdown table."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from data_engine_common import ARMS, KINDS, load_cfg


def report(out: Path) -> dict:
    results = [json.loads(p.read_text()) for p in sorted(out.glob("seed*/*/result.json"))]
    if not results:
        raise SystemExit(f"{out}: no arm results yet")
    c = load_cfg(out)
    by = {(r["arm"], r["seed"]): r for r in results}
    seeds = sorted({r["seed"] for r in results})

    def stat(xs: list[float]) -> str:
        xs = [x for x in xs if not math.isnan(x)]
        if not xs:
            return "n/a"
        return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"

    groups = ["all", *KINDS]

    def val(r: dict, g: str, metric: str) -> float:
        return r["heldout_all"][metric] if g == "all" else r["heldout"][g][metric]

    lines = [f"Held-out clips per kind: {c['counts']['heldout']}; round 0 per kind: {c['counts']['round0']} "
             f"(rare: {c['rare_kind']}); size {c['size']}, seeds {seeds}; protocol {results[0]['protocol']}; steps "
             f"{sorted({(r.get('steps0', c['steps0']), r.get('steps1', c['steps1'])) for r in results})} (round 0, more); "
             f"train s measured with {sorted({r.get('concurrent_runs', 1) for r in results})} run(s) sharing the machine.", ""]
    for metric in ("psnr_obj", "psnr"):
        lines.append(f"| arm | {' | '.join(f'{metric} {g}' for g in groups)} | vs control ({metric}, all) | "
                     f"vs control ({c['rare_kind']}) | new clips | images | render core-s | train s |")
        lines.append("|" + "---|" * (len(groups) + 7))
        for a in ARMS:
            rs = [by[(a, s)] for s in seeds if (a, s) in by]
            if not rs:
                continue
            cells = [stat([val(r, g, metric) for r in rs]) for g in groups]
            diffs = {g: [val(by[(a, s)], g, metric) - val(by[("control", s)], g, metric) for s in seeds
                         if (a, s) in by and ("control", s) in by] for g in ("all", c["rare_kind"])}
            cost = [stat([float(r[k]) for r in rs]) for k in ("new_clips", "new_images", "render_core_s", "train_s")]
            if rs and all(str(r.get("render_source", "")).startswith("cache") for r in rs):
                cost[2] += " (from the render cache)"
            lines.append(f"| {a} | " + " | ".join(cells) + f" | {stat(diffs['all'])} | {stat(diffs[c['rare_kind']])} | "
                         + " | ".join(cost) + " |")
        lines.append("")
    text = "\n".join(lines)
    (out / "experiment.json").write_text(json.dumps({"config": c, "results": results, "table": text}, indent=1))
    print(text)
    return {"table": text}


def loop_report(out: Path) -> dict:
    """Issue 23: per scenario, each arm's test psnr_obj (all and per group) as mean ± std over seeds, the paired
    difference to random (same seed, same round-0 checkpoint), new clips per group, and each arm's costs."""
    from data_engine_arms import LOOP_ARMS
    from data_engine_loop import GROUP_BY, SCENARIOS

    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*/seed*/*/result.json"))]
    if not rows:
        raise SystemExit(f"{out}: no arm results yet")

    def stat(xs: list[float | None]) -> str:  # None: not recorded (a salvaged run's GPU seconds)
        xs = [x for x in xs if x is not None and not math.isnan(x)]
        if not xs:
            return "n/a"
        return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"

    lines, summary = [], {}
    for s in SCENARIOS:
        rs = [r for r in rows if r["scenario"] == s]
        if not rs:
            continue
        by = {(r["arm"], r["seed"]): r for r in rs}
        seeds = sorted({r["seed"] for r in rs})
        groups = sorted({g for r in rs for g in r["test"] if g != "all"})
        steps = sorted({(r["steps0"], r["steps1"]) for r in rs})
        lines += [f"### {s} (groups by {GROUP_BY[s]}; seeds {seeds}; steps {steps}; budget "
                  f"{sorted({r['budget'] for r in rs})} clips; protocol {rs[0]['protocol']})", "",
                  f"| arm | psnr_obj test | {' | '.join(groups)} | vs random (paired) | new clips by group | "
                  f"render core-s | GPU s |", "|" + "---|" * (len(groups) + 6)]
        r0 = [by[k]["round0_test"]["all"]["psnr_obj"] for k in by if k[0] == "random"]
        for a in LOOP_ARMS:
            ar = [by[(a, x)] for x in seeds if (a, x) in by]
            if not ar:
                continue
            diff = [by[(a, x)]["test"]["all"]["psnr_obj"] - by[("random", x)]["test"]["all"]["psnr_obj"]
                    for x in seeds if (a, x) in by and ("random", x) in by]
            summary[(s, a)] = {"diff_mean": statistics.mean(diff) if diff else math.nan,
                               "diff_std": statistics.stdev(diff) if len(diff) > 1 else math.nan}
            cells = [stat([r["test"].get(g, {}).get("psnr_obj", math.nan) for r in ar]) for g in groups]
            new = {g: statistics.mean(r["new_by_group"].get(g, 0) for r in ar) for g in sorted({g for r in ar for g in r["new_by_group"]})}
            notes = sorted({r["note"] for r in ar if r.get("note")})
            lines.append(f"| {a} | {stat([r['test']['all']['psnr_obj'] for r in ar])} | " + " | ".join(cells) +
                         f" | {stat(diff) if a != 'random' else ''} | {', '.join(f'{g} {v:.1f}' for g, v in new.items())} | "
                         f"{stat([r['render_core_s'] for r in ar])} | {stat([r['gpu_s'] for r in ar])}"
                         + (f" ({'; '.join(notes)})" if notes else "") + " |")
        curves = [r["curve"] for r in rs if r["arm"] == "random" and r.get("curve")]
        lines += ["", f"Round 0 alone on the test clips: psnr_obj {stat(r0)}; random arm's curve (step: psnr_obj, "
                      f"per seed): {curves}; GPU s measured with {sorted({r.get('concurrent_runs', 1) for r in rs} - {None})} "
                      f"arm run(s) sharing the host.", ""]
    text = "\n".join(lines)
    (out / "loop_report.json").write_text(json.dumps({"results": rows, "table": text,
                                                      "paired": {f"{s}/{a}": v for (s, a), v in summary.items()}},
                                                     indent=1))
    print(text)
    return {"table": text}
