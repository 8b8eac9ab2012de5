"""`pipeline demo`: the whole data-engine loop on the embedded default, no network, no GPU.

Each stage runs as the real command in its own process (`python -m pipeline ...`), exactly as a user
would type it, so the demo exercises the product and keeps Blender, Ray and torch apart; the stages
talk through the files they write (manifests, shards, checkpoints, metrics). The loop:

  curate (procedural assets [+ --assets DIR]) -> render (local Ray) -> train (tiny, CPU)
  -> eval -> mine (weights + denser re-render requests) -> render the requests
  -> train on, drawing hard samples more often -> eval again (same protocol, same pairs)
  -> control: random picks of the same counts (up-weighted, re-rendered), the same extra steps from the
     same checkpoint -> eval -> report

A few procedural assets (--heldout) are kept out of training: their clips get shards of their own that
no training run reads, every evaluation scores them too (`seen_in_training` false in the metrics),
and the report's "mined vs control" line is stated on them, next to the training clips. Mining reads
the training manifest only, so a held-out clip is never up-weighted or re-rendered into training.

Every stage is resumable on its own, so a killed demo run again with the same --out picks up where
it stopped. DIR/report.html shows what happened; DIR/demo.json holds the numbers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contracts.layout import committed_shards
from pipeline.demo_counts import curate_counts, eval_counts, mine_counts, render_counts, train_counts
from pipeline.demo_manifests import merge_manifests

log = logging.getLogger(__name__)


class DemoError(RuntimeError):
    """A stage failed; the message names the stage and the command to rerun it."""


PROCEDURAL_CLIPS = 2  # clips kept per procedural asset (the categories make 2-6): the loop's size stays what it was


@dataclass
class DemoConfig:
    out: str                        # the demo folder (everything goes below it)
    assets: str | None = None       # a folder of the user's .glb/.gltf files, added to the procedural ones
    count: int = 20                 # procedural assets: 16 trained on (~30 clips, a ranking of hard samples)
    heldout: int = 4                # of them kept out of training, scored by every evaluation (0 = none)
    seed: int = 0                   # procedural seed: the same demo every time
    shard_size: int = 8             # several shards, so the Ray pool and the mining have something to spread
    resolution: int = 64            # render size; the tiny model trains at 32 px, renders are resized to it
    frames: int = 6                 # times per clip: enough for novel-time targets between the inputs' times
    views: int = 6                  # fixed orbit views: enough for novel-view targets
    samples: int = 4                # Cycles samples per pixel: clean enough at 64 px, fast on 2 cores
    workers: int = 2                # Ray render actors: one per core of a laptop-class machine
    steps: int = 600                # training steps of round 0 (tiny model on CPU, batch 4)
    more_steps: int = 300           # further steps in round 1, drawing mined samples --boost times as often
    fraction: float = 0.25          # hard share mined (of ~30 samples: ~8 hard ones)
    boost: float = 4.0              # weight multiplier of hard samples
    rerender_fraction: float = 0.1  # of the scored samples, re-rendered denser (the hardest of the hard)
    batch_size: int = 4             # tiny model batch on CPU
    worst: int = 4                  # image grids of the worst samples per evaluation
    size: str = "default"           # "default" or "smoke" (the CI size); recorded in the report

    def __post_init__(self) -> None:
        for name in ("count", "shard_size", "resolution", "frames", "views", "samples", "workers", "steps",
                     "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.heldout < self.count:
            raise ValueError(f"--heldout must be in [0, --count={self.count}) (some assets must be trained on), "
                             f"got {self.heldout}")
        if self.more_steps < 0:
            raise ValueError(f"--more-steps must be >= 0, got {self.more_steps}")
        if self.frames < 3:
            raise ValueError(f"--frames must be >= 3 (the evaluation holds out times between inputs), got {self.frames}")
        if self.assets and not Path(self.assets).is_dir():
            raise ValueError(f"--assets {self.assets}: no such folder")


def smoke(out: str, **kw: Any) -> DemoConfig:
    """The smallest loop that still exercises every stage (for CI)."""
    base = dict(count=5, heldout=1, shard_size=3, resolution=32, frames=4, views=4, samples=1, workers=2, steps=24,
                more_steps=12, fraction=0.5, rerender_fraction=0.25, batch_size=2, worst=2, size="smoke")
    base.update(kw)
    return DemoConfig(out=out, **base)


def estimate_minutes(cfg: DemoConfig) -> float:
    """Rough wall time on 2 CPU cores, from the stage times of the default demo on the CPU box
    (BENCHMARKS.md): ~4 s per command, ~10 s more per Ray render, 0.021 s per 64 px image on 2 workers,
    0.28 s per training step at batch 4, 0.1 s per evaluated sample."""
    clips = PROCEDURAL_CLIPS * cfg.count + (3 if cfg.assets else 0)           # procedural: 2 clips per asset
    images = clips * cfg.frames * cfg.views * (1 + 16 * cfg.rerender_fraction)  # + mined and random re-renders (2x frames, 2x+ views)
    render_s = images * 0.042 * (cfg.resolution / 64) ** 2 * math.sqrt(cfg.samples / 4) / min(cfg.workers, 2)
    fixed_s = 13 * 4 + 3 * 10 + cfg.count * 0.3
    train_s = (cfg.steps + 2 * cfg.more_steps) * 0.28 * cfg.batch_size / 4  # + the control's extra steps
    eval_s = 4 * clips * 0.1
    return (render_s + fixed_s + train_s + eval_s) / 60


@dataclass
class Stage:
    name: str
    command: str
    seconds: float
    counts: dict[str, Any] = field(default_factory=dict)


class Demo:
    def __init__(self, cfg: DemoConfig):
        self.cfg = cfg
        self.dir = Path(cfg.out)
        self.data = self.dir / "data"
        self.run_dir = self.dir / "run"
        self.stages: list[Stage] = []
        self.train_manifest = self.dir / "manifest.parquet"            # the rows training and mining see
        self.heldout_manifest = self.dir / "manifest_heldout.parquet"  # clips never trained on
        self.round0_metrics = self.dir / "eval" / "round0.parquet"     # what mining (and its control) ranks
        self.state_path = self.dir / "demo_state.json"
        self.done: dict[str, dict[str, Any]] = {}

    def _load_state(self) -> None:
        """Stages finished by an earlier run of this demo folder (their done records)."""
        if not self.state_path.exists():
            return
        state = json.loads(self.state_path.read_text())
        saved, now = state.get("config", {}), asdict(self.cfg)
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if diff:
            raise DemoError(f"{self.dir} was made by a demo with other settings ({', '.join(diff)}); "
                            f"use a new --out, or the same settings to resume")
        self.done = state.get("done", {})

    def _save_state(self) -> None:
        tmp = self.state_path.with_name(f".{self.state_path.name}.tmp")
        tmp.write_text(json.dumps({"config": asdict(self.cfg), "done": self.done}, indent=1, default=str))
        os.replace(tmp, self.state_path)

    def _stage(self, key: str, fn) -> Stage:
        """Run stage `key` unless an earlier run finished it; record it as done (last)."""
        if key in self.done:
            rec = self.done[key]
            stage = Stage(rec["name"], rec["command"], rec["seconds"], rec.get("counts", {}))
            self.stages.append(stage)
            print(f"\n== [{len(self.stages)}] {stage.name}: done by an earlier run, skipped", flush=True)
            return stage
        stage = fn()
        self.done[key] = asdict(stage)
        self._save_state()
        return stage

    # -- helpers --------------------------------------------------------------------------------
    def _pipeline(self, name: str, *args: str) -> Stage:
        argv = [sys.executable, "-m", "pipeline", *args]
        shown = shlex.join(["pipeline", *args])
        print(f"\n== [{len(self.stages) + 1}] {name}: {shown}", flush=True)
        t0 = time.perf_counter()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # One intra-op thread per process: the trainer and its loader worker are two processes on a
        # laptop-class CPU already; with torch's default (all cores each) a busy machine made the tiny
        # model ~30x slower per step (spinning thread pools, BENCHMARKS.md), at one thread it barely slows.
        env.setdefault("OMP_NUM_THREADS", "1")
        r = subprocess.run(argv, env=env)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise DemoError(f"stage '{name}' failed with exit code {r.returncode}; rerun it with:\n  {shown}")
        stage = Stage(name, shown, dt)
        self.stages.append(stage)
        return stage

    def _render_flags(self) -> list[str]:
        c = self.cfg
        return ["--preset", "debug", "--resolution", str(c.resolution), "--frames", str(c.frames), "--views",
                str(c.views), "--samples", str(c.samples), "--workers", str(c.workers), "--cpus-per-worker", "1"]

    def _train(self, name: str, steps: int, weights: Path | None, shards: str | None = None,
               run_dir: Path | None = None) -> Stage:
        c = self.cfg
        total = c.steps + c.more_steps
        args = ["train", "--shards", shards or str(self.data), "--out", str(run_dir or self.run_dir), "--preset", "tiny",
                "--steps", str(steps), "--batch-size", str(c.batch_size), "--num-workers", "1",
                "--device", "cpu", "--log-every", str(max(1, min(20, total // 30))),
                "--grid-every", str(max(1, total // 3)), "--ckpt-every", str(max(1, total // 6)),
                "--set", f"optim.schedule_steps={total}", "--set", f"optim.warmup_steps={max(1, total // 20)}",
                "--set", "data.batches_per_epoch=50", "--set", "keep_checkpoints=1000"]
        if weights is not None:
            args += ["--weights", str(weights)]
        return self._pipeline(name, *args)

    def _eval(self, name: str, out: Path, shards: str, checkpoint: str) -> Stage:
        return self._pipeline(name, "eval", "--checkpoint", checkpoint, "--shards", shards, "--out", str(out),
                              "--device", "cpu", "--batch-size", "4", "--worst", str(self.cfg.worst), "--no-progress")

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> Path:
        c = self.cfg
        self.dir.mkdir(parents=True, exist_ok=True)
        self._load_state()
        t_start = time.perf_counter()
        everything = self.dir / "manifest_all.parquet"
        self._curate(everything)

        def render0() -> Stage:
            st = self._pipeline("render", "render", "--manifest", str(everything), "--shards", "all", "--out",
                                str(self.data), *self._render_flags())
            st.counts = render_counts(self.data, committed_shards(self.data))
            st.counts["shard_list"] = committed_shards(self.data)
            return st

        round0 = self._stage("render0", render0).counts["shard_list"]
        train_shards, heldout_shards = self._split_shards(round0)
        round0_spec = self._spec(train_shards)  # what training reads in round 0
        scored_spec = self._spec(train_shards + heldout_shards)  # what every evaluation scores

        def train0() -> Stage:
            st = self._train("train round 0", c.steps, None, shards=round0_spec)
            st.counts = train_counts(self.run_dir)
            return st

        self._stage("train0", train0)
        before = self.round0_metrics

        def eval0() -> Stage:  # the round-0 checkpoint by name: a rerun must not score a later one
            st = self._eval("eval round 0", before, scored_spec, self._checkpoint(c.steps))
            st.counts = eval_counts(before)
            return st

        self._stage("eval0", eval0)
        nxt = self.dir / "manifest_round1.parquet"
        self._stage("mine", lambda: self._mine("mine", nxt))
        new = self._stage("render1", lambda: self._render_requests("render re-render requests", nxt,
                                                                   set(round0))).counts["shard_list"]

        def train1() -> Stage:
            st = self._train("train round 1 (mined weights)", c.steps + c.more_steps, nxt,
                             shards=self._spec(train_shards + new))
            st.counts = train_counts(self.run_dir)
            return st

        self._stage("train1", train1)
        after = self.dir / "eval" / "round1.parquet"
        last = self._checkpoint(c.steps + c.more_steps)

        def eval1() -> Stage:
            st = self._eval("eval round 1 (same protocol, same samples)", after, scored_spec, last)
            st.counts = eval_counts(after)
            return st

        self._stage("eval1", eval1)
        if new:
            rer = self.dir / "eval" / "round1_rerendered.parquet"

            def eval_rer() -> Stage:
                st = self._eval("eval round 1 on the re-rendered shards", rer, self._spec(new), last)
                st.counts = eval_counts(rer)
                return st

            self._stage("eval1_rerendered", eval_rer)
        if c.more_steps:
            self._control(train_shards, set(round0) | set(new), scored_spec)
        self._viewer_scene(last, after)
        total = time.perf_counter() - t_start
        from pipeline.report import write_report

        report = write_report(self, total)
        print(f"\n== done in {total / 60:.1f} min: {report}", flush=True)
        return report

    def _split_shards(self, committed: list[int]) -> tuple[list[int], list[int]]:
        """(training shards, held-out shards) among `committed`, from the two manifests' shard numbers."""
        import pandas as pd

        held = set(pd.read_parquet(self.heldout_manifest, columns=["shard"])["shard"]) if self.cfg.heldout else set()
        return [n for n in committed if n not in held], [n for n in committed if n in held]

    def _spec(self, shards: list[int]) -> str:
        return "::".join(str(self.data / f"shard-{n:06d}.tar") for n in shards)

    def _mine(self, name: str, out: Path, *strategy: str) -> Stage:
        """`pipeline mine` of the round-0 metrics over the training manifest into `out`, at the demo's
        fraction, boost and re-render share (`strategy`: extra flags, e.g. the random control's)."""
        c = self.cfg
        st = self._pipeline(name, "mine", *strategy, "--metrics", str(self.round0_metrics),
                            "--manifest", str(self.train_manifest), "--renders", str(self.data), "--out", str(out),
                            "--fraction", str(c.fraction), "--boost", str(c.boost), "--rerender-fraction",
                            str(c.rerender_fraction), "--shard-size", str(c.shard_size))
        st.counts = mine_counts(self.train_manifest, out)
        return st

    def _render_requests(self, name: str, manifest: Path, known: set[int]) -> Stage:
        """Render the new shards `manifest` asks for; the counts of the committed shards not in `known`
        (named, not diffed against a listing taken first: a resumed stage keeps what a killed one committed)."""
        st = self._pipeline(name, "render", "--manifest", str(manifest), "--shards", "all", "--out", str(self.data),
                            *self._render_flags())
        new = sorted(set(committed_shards(self.data)) - known)
        st.counts = render_counts(self.data, new)
        st.counts["shard_list"] = new
        return st

    def _control(self, train_shards: list[int], known: set[int], scored_spec: str) -> None:
        """Random picks: `pipeline mine --strategy random` up-weights and re-renders as many training clips as
        the mined round did, drawn at random (seeded by --seed); its requests are rendered, and the same extra
        steps run from the same round-0 checkpoint with those weights, scored with the same protocol: what the
        loss ranking bought over picking the same counts blindly (issue 23's control). `known`: every shard
        committed before its re-renders."""
        import shutil

        c = self.cfg
        control = self.dir / "run_control"
        picks = self.dir / "manifest_random.parquet"

        self._stage("mine_random", lambda: self._mine("mine random picks (control)", picks, "--strategy", "random",
                                                      "--pool-seed", str(c.seed)))
        new = self._stage("render_random", lambda: self._render_requests("render random re-render requests", picks,
                                                                         known)).counts["shard_list"]

        def train_control() -> Stage:
            shutil.rmtree(control, ignore_errors=True)  # a partial control run from a killed demo
            (control / "checkpoints").mkdir(parents=True)
            shutil.copy2(self._checkpoint(c.steps), control / "checkpoints" / f"step-{c.steps:08d}.pt")
            shutil.copy2(self.run_dir / "config.json", control / "config.json")
            st = self._train("train control (random picks, same counts)", c.steps + c.more_steps, picks,
                             shards=self._spec(train_shards + new), run_dir=control)
            st.counts = train_counts(control)
            return st

        self._stage("train_control", train_control)
        out = self.dir / "eval" / "control.parquet"

        def eval_control() -> Stage:
            ckpt = str(control / "checkpoints" / f"step-{c.steps + c.more_steps:08d}.pt")
            st = self._eval("eval control (same protocol, same samples)", out, scored_spec, ckpt)
            st.counts = eval_counts(out)
            return st

        self._stage("eval_control", eval_control)

    def _viewer_scene(self, checkpoint: str, metrics: Path) -> None:
        """One clip reconstructed with the last checkpoint (a held-out one when there is one) and written
        as a self-contained 3D scene that the report embeds (`pipeline view --export`, viewer/export.py)."""
        import importlib.util

        import pandas as pd

        m = pd.read_parquet(metrics, columns=["key", "seen_in_training"]).sort_values("key")
        held = m[m["seen_in_training"] == False]  # noqa: E712 (a nullable column)
        key = str((held if len(held) else m)["key"].iloc[0])
        rec = self.dir / "reconstruction"
        self._stage("reconstruct", lambda: self._pipeline(
            "reconstruct one clip", "reconstruct", "--checkpoint", checkpoint, "--input", f"{self.data}#{key}",
            "--out", str(rec), "--device", "cpu", "--anim-frames", "8"))
        if importlib.util.find_spec("viser") is None:
            print("\n== the view extra (viser) is not installed: no 3D scene in the report", flush=True)
            return
        self._stage("view_export", lambda: self._pipeline(
            "3D scene for the report", "view", "--reconstruction", str(rec), "--export",
            str(self.dir / "report_files" / "reconstruction.html")))

    def _checkpoint(self, step: int) -> str:
        return str(self.run_dir / "checkpoints" / f"step-{step:08d}.pt")

    def _curate(self, manifest: Path) -> None:
        """Procedural assets (+ the user's folder) -> one manifest with shards over the union."""
        c = self.cfg
        proc = self.dir / "manifest_procedural.parquet"

        def procedural() -> Stage:
            st = self._pipeline("curate procedural assets", "curate", "--source", "procedural", "--count", str(c.count),
                                "--seed", str(c.seed), "--max-clips-per-asset", str(PROCEDURAL_CLIPS),
                                "--assets-out", str(self.dir / "assets"), "--shard-size",
                                str(c.shard_size), "--out", str(proc), "--dropped-out",
                                str(self.dir / "dropped_procedural.parquet"))
            st.counts = curate_counts(proc, self.dir / "dropped_procedural.parquet")
            return st

        self._stage("curate_procedural", procedural)
        parts = [proc]
        if c.assets:
            local = self.dir / "manifest_local.parquet"

            def user_assets() -> Stage:
                st = self._pipeline("curate --assets folder", "curate", "--source", "local", "--dir", str(c.assets),
                                    "--shard-size", str(c.shard_size), "--out", str(local), "--dropped-out",
                                    str(self.dir / "dropped_local.parquet"))
                st.counts = curate_counts(local, self.dir / "dropped_local.parquet")
                return st

            self._stage("curate_local", user_assets)
            parts.append(local)
        if "merge" not in self.done:
            merge_manifests(parts, manifest, c.shard_size, heldout=c.heldout, train_out=self.train_manifest,
                            heldout_out=self.heldout_manifest)
            self.done["merge"] = {"name": "merge", "command": "", "seconds": 0.0}
            self._save_state()

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.cfg)
