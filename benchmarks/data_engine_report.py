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
