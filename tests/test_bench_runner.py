"""benchmarks/device.py, the device runner, on the CPU box: its stage table, argument parsing, the time
budget and GPU placement (the scheduler simulated), a dry run of every stage, and real runs of small CPU
commands (timeouts kill the whole process group, markers, collected files, the summary, the archive)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import device  # noqa: E402
from device_plan import SAFE_ENV, Job, Scheduler, Skip, SkipJob, Start, core_ranges, job_env  # noqa: E402
from device_results import keep, needs_pack, pack  # noqa: E402
from device_run import Runner  # noqa: E402
from device_stages_train import learn_minutes  # noqa: E402

RESULTS = BENCH / "results"


def dry(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OUT", None)
    p = subprocess.run([sys.executable, str(BENCH / "device.py"), *args, "--dry-run"], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


# -- the stage table and arguments -------------------------------------------------------------------------


def test_stage_table_has_every_question():
    assert {"setup", "speed", "l4gm", "ddp", "data-engine", "learn", "gputests", "parity", "e2e", "before",
            "curve"} <= set(device.STAGES)


@pytest.mark.parametrize("stage", sorted(device.STAGES))
def test_every_stage_builds_jobs_with_known_dependencies(stage, tmp_path):
    a = device.parse([stage, "--gpus", "0,1"])
    jobs = device.build(a, tmp_path, [0, 1])
    names = [j.name for j in jobs]
    assert len(names) == len(set(names))
    Scheduler(jobs, [0, 1], 540)  # raises on an unknown dependency or a bad share
    own = [j for j in jobs if j.stage == stage]
    assert own, f"stage {stage} made no jobs"
    if stage != "setup":
        assert {"setup-install", "setup-compile"} <= set(names)  # setup comes first by itself


def test_parse_lists_and_defaults():
    a = device.parse(["speed", "learn", "--variants", "base base:nh=8 small", "--learn-arms",
                      "hd64:model.heads=8 hd128:model.heads=4,loss.lpips_every=2", "--ddp-variants", "default torch"])
    assert a.stages == ["speed", "learn"]
    assert a.variants == ["base", "base:nh=8", "small"]
    assert a.learn_arms == ["hd64:model.heads=8", "hd128:model.heads=4,loss.lpips_every=2"]
    assert a.ddp_variants == ["default", "torch"]
    assert a.budget_s == 540 and a.split == ["base"]
    assert a.de_work == str(Path(a.work) / "exp13_work")


@pytest.mark.parametrize("argv, message", [
    (["spead"], "unknown stage(s) ['spead']"),
    (["ddp", "--ddp-variants", "bucket50+fast"], "unknown part 'fast'"),
    (["learn", "--learn-arms", "hd64:model.heads"], "is not key=value"),
    (["speed", "--budget-s", "0"], "--budget-s must be positive"),
])
def test_parse_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        device.parse(argv)
    assert message in capsys.readouterr().err


def test_gpu_list():
    assert device.gpu_list("0,1", False) == [0, 1]
    assert device.gpu_list("none", False) == []
    with pytest.raises(SystemExit, match="distinct"):
        device.gpu_list("1,1", False)
    with pytest.raises(SystemExit, match="GPU indices"):
        device.gpu_list("a", False)


def test_ddp_variant_names():
    assert common.ddp_variant_sets("default") == []
    assert common.ddp_variant_sets("nosplit+bucket100+gradview+bf16hook") == [
        "ddp.split_compiled=false", "ddp.bucket_cap_mb=100", "ddp.gradient_as_bucket_view=true", "ddp.comm_hook=bf16"]
    assert "ddp.bucket_cap_mb=25" in common.ddp_variant_sets("torch")


# -- placement and budget (the scheduler without processes) -------------------------------------------------


def J(name, gpus=1, **kw):
    return Job(name, "t", ["true"], gpus=gpus, **kw)


def started(acts):
    return {a.job.name: a.gpus for a in acts if isinstance(a, Start)}


def test_one_gpu_jobs_spread_then_wait_in_order():
    s = Scheduler([J("a"), J("b"), J("c"), J("cpu", gpus=0)], [0, 1], 540)
    assert started(s.due(0)) == {"a": [0], "b": [1], "cpu": []}
    assert started(s.due(1)) == {}
    s.finish("b", 0)
    assert started(s.due(2)) == {"c": [1]}


def test_two_gpu_job_holds_back_later_gpu_jobs_not_cpu_jobs():
    s = Scheduler([J("one"), J("both", gpus=2), J("later"), J("cpu", gpus=0)], [0, 1], 540)
    assert started(s.due(0)) == {"one": [0], "cpu": []}  # `later` would fit on GPU 1 but waits behind `both`
    s.finish("one", 0)
    assert started(s.due(5)) == {"both": [0, 1]}
    s.finish("both", 0)
    assert started(s.due(9)) == {"later": [0]}


def test_shares_pack_runs_onto_gpus():
    jobs = [J(f"r{i}", share=0.5) for i in range(3)]
    s = Scheduler(jobs, [0, 1], 540)
    assert started(s.due(0)) == {"r0": [0], "r1": [1], "r2": [0]}
    assert s.free == {0: 0.0, 1: 0.5}
    s.finish("r0", 0)
    assert s.free[0] == 0.5


def test_gang_starts_together_or_waits():
    jobs = [J("busy"), J("l1", gang="g"), J("l2", gang="g")]
    s = Scheduler(jobs, [0, 1], 540)
    assert started(s.due(0)) == {"busy": [0]}  # l1 would fit on GPU 1 alone
    s.finish("busy", 0)
    assert started(s.due(3)) == {"l1": [0], "l2": [1]}


def test_dependencies_and_failures():
    jobs = [J("prep", gpus=0), J("run", needs=("prep",)), J("report", gpus=0, after=("run",))]
    s = Scheduler(jobs, [0], 540)
    assert started(s.due(0)) == {"prep": []}
    s.finish("prep", 1)
    acts = s.due(1)
    assert [(a.job.name, a.reason) for a in acts if isinstance(a, Skip)] == [
        ("run", "needs prep, which did not succeed")]
    assert started(acts) == {"report": []}  # `after` waits for the end, whatever the result


def test_budget_timeouts_and_skips():
    jobs = [J("capped", max_s=100), J("reserved", reserve_s=200), J("late", min_s=60),
            J("report", gpus=0, always=True, max_s=45)]
    s = Scheduler(jobs, [0, 1, 2], 300, end_reserve_s=10)
    acts = {a.job.name: a for a in s.due(0)}
    assert acts["capped"].timeout == 100
    assert acts["reserved"].timeout == 90  # 300 - 10 - 200
    assert acts["late"].timeout == 290
    s2 = Scheduler([J("late", min_s=60), J("report", gpus=0, always=True, max_s=45)], [0], 300, end_reserve_s=10)
    acts = {a.job.name: a for a in s2.due(250)}
    assert isinstance(acts["late"], Skip) and "over budget (40 s left, needs 60 s)" in acts["late"].reason
    assert acts["report"].timeout == 45  # runs even past the budget


def test_skips_for_gpus_paths_and_declined_commands(tmp_path):
    def declines(left):
        raise SkipJob(f"too short at {int(left)} s")

    jobs = [J("two", gpus=2), J("pack", requires=(str(tmp_path / "absent"),)),
            Job("short", "t", declines, gpus=1)]
    acts = {a.job.name: a for a in Scheduler(jobs, [0], 100, end_reserve_s=0).due(0)}
    assert acts["two"].reason == "needs 2 GPU(s), 1 given"
    assert acts["pack"].reason.endswith("absent not there (carry it)")
    assert acts["short"].reason == "too short at 100 s"


def test_scheduler_refuses_bad_job_lists():
    with pytest.raises(ValueError, match="unique"):
        Scheduler([J("a"), J("a")], [0], 10)
    with pytest.raises(ValueError, match="unknown job"):
        Scheduler([J("a", needs=("b",))], [0], 10)
    with pytest.raises(ValueError, match="share"):
        Scheduler([J("a", share=0)], [0], 10)


def test_learn_minutes_from_the_budget():
    assert learn_minutes(530, 0, 1) == 2.0  # capped
    assert learn_minutes(400, 170, 1) == round((400 - 170 - 130) / 60, 2)
    assert learn_minutes(400, 0, 2) == round((400 - 260) / 120, 2)  # two waves share what is left
    assert learn_minutes(100, 0, 1) == 0.0


def test_core_halves_and_environment():
    assert core_ranges(32, [0, 1]) == {0: "0-15", 1: "16-31"}
    assert core_ranges(16, [0]) == {}
    assert core_ranges(3, [0, 1]) == {}
    job = J("x", env={"NCCL_NVLS_ENABLE": "1", "OMP_NUM_THREADS": "4"}, nice=True)
    env, prefix = job_env({"PATH": "/bin"}, Start(job, [1], 10, ["true"]), core_ranges(32, [0, 1]), "/repo")
    assert prefix == ["nice", "-n", "19", "taskset", "-c", "16-31"]
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["OMP_NUM_THREADS"] == "4"
    assert env["TORCHINDUCTOR_COMPILE_THREADS"] == "8"
    assert env["PYTHONPATH"].split(os.pathsep)[:2] == ["/tmp/site", "/repo"]
    for k, v in SAFE_ENV.items():  # no job turns NVLink multicast back on
        assert env[k] == v
    env2, prefix2 = job_env({}, Start(J("y", gpus=2), [0, 1], 10, ["true"]), core_ranges(32, [0, 1]), "/repo")
    assert prefix2 == [] and env2["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_shell_scripts_get_the_jobs_environment_from_exports():
    """`eval "$(device.py exports)"` (loop_gpu.sh, procedural_transfer.sh) sets what a job runs under."""
    script = f'eval "$({sys.executable} {BENCH / "device.py"} exports)" && env'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=True,
                         env={"PATH": os.environ["PATH"], "PYTHONPATH": "/extra"}).stdout
    got = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    env, _ = job_env({"PYTHONPATH": "/extra"}, Start(J("x"), [], 10, ["true"]), {}, str(REPO))
    for k in ("PYTHONPATH", "MAX_JOBS", "TORCH_CUDA_ARCH_LIST", *SAFE_ENV):
        assert got[k] == env[k], k
    for name in ("loop_gpu.sh", "procedural_transfer.sh"):
        assert 'eval "$(python3 benchmarks/device.py exports)"' in (BENCH / name).read_text(), name


# -- dry runs of every stage --------------------------------------------------------------------------------


def test_dry_run_issue26_measurement():
    out = dry("speed", "l4gm", "--gpus", "0", "--variants", "base small", "--speed-parts", "train,split,infer",
              "--infer-views", "4,24", "--l4gm-presets", "l4gm-base,l4gm-small", "--l4gm-infer-modes", "compiled,graph")
    assert "bench_speed.py prep --data /tmp/bench/speed_data" in out
    assert "--parts train,split,infer --steps 8 --variants base --split base" in out
    assert "--infer-views 4,24" in out and "--parts train --steps 8 --variants small" in out
    assert "bench_l4gm_gpu.py --out /tmp/device_out/l4gm/l4gm_speed.json --presets l4gm-base,l4gm-small " \
           "--infer-modes compiled,graph --frames 16" in out
    assert "CUDA_VISIBLE_DEVICES=0 " in out and "taskset" not in out  # one GPU: nothing to pin
    # on one GPU the GPU jobs go one after the other, each after the compile and its data
    waves = [int(x.split("]")[0].split()[-1]) for x in out.splitlines() if x.startswith("[wave")]
    assert waves == sorted(waves)


def test_dry_run_issue26_third_round_quotes_l4gm_variants_and_caps_the_l4gm_job():
    out = dry("l4gm", "speed", "--gpus", "0", "--budget-s", "560", "--l4gm-max-s", "180", "--variants", "small base:fp8=1",
              "--speed-parts", "train,inferprof", "--l4gm-presets", "l4gm-base",
              "--l4gm-args", "--only-variants --train-variants 'l4gm-base:ckpt=0 l4gm-small:bs=16:lp=1' --split 'l4gm-small'")
    l4 = next(x for x in out.splitlines() if "bench_l4gm_gpu.py" in x)
    assert "--train-variants 'l4gm-base:ckpt=0 l4gm-small:bs=16:lp=1' --split l4gm-small" in l4  # one argument each
    assert "l4gm/l4gm-speed gpus=[0] timeout=180s" in out
    assert "--parts train,inferprof" in out and "--variants base:fp8=1" in out


def test_dry_run_inference_profile_alone_gets_the_inference_settings():
    """--speed-parts split,inferprof (no infer): the profile still runs in the mode and view counts asked for."""
    out = dry("speed", "--speed-parts", "split,inferprof", "--variants", "small", "--split", "small",
              "--infer-modes", "graphall", "--infer-views", "24")
    (line,) = [x for x in out.splitlines() if "bench_speed.py run" in x]
    assert "--parts split,inferprof" in line and "--infer-modes graphall --infer-views 24" in line
    out = dry("speed", "--speed-parts", "infer", "--infer-modes", "graphall", "--infer-views", "4,24", "--infer-packed", "0,1")
    (line,) = [x for x in out.splitlines() if "bench_speed.py run" in x]
    assert "--infer-packed 0,1" in line


def test_l4gm_training_variants_and_split_on_the_cpu(tmp_path):
    """bench_l4gm_gpu.py's training-step variants and time split, run on the CPU with l4gm-tiny (numbers
    meaningless): every row has its measurements, and an unknown key fails before anything runs."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    out = tmp_path / "l4.json"
    p = subprocess.run([sys.executable, str(BENCH / "bench_l4gm_gpu.py"), "--out", str(out), "--device", "cpu",
                        "--presets", "l4gm-tiny", "--only-variants", "--steps", "2",
                        "--train-variants", "l4gm-tiny:bs=1:ckpt=1 l4gm-tiny:lpevery=2", "--split", "l4gm-tiny"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.loads(out.read_text())
    rows = {r["variant"]: r for r in res["training"]}
    assert set(rows) == {"l4gm-tiny:bs=1:ckpt=1", "l4gm-tiny:lpevery=2"}
    assert rows["l4gm-tiny:bs=1:ckpt=1"]["batch"] == 1 and rows["l4gm-tiny:bs=1:ckpt=1"]["grad_checkpoint"] is True
    assert all(r["step_s"] > 0 and r["samples_per_s"] > 0 for r in rows.values())
    (split,) = res["split"]
    assert all(split[k] > 0 for k in ("whole_step_ms", "model_fwd_bwd_ms", "render_fwd_bwd_ms", "clip_adamw_ms"))
    bad = subprocess.run([sys.executable, str(BENCH / "bench_l4gm_gpu.py"), "--out", str(tmp_path / "x.json"),
                          "--device", "cpu", "--only-variants", "--train-variants", "l4gm-tiny:batch=2"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert bad.returncode != 0 and "'batch=2' is not KEY=VALUE with KEY one of bs" in bad.stderr + bad.stdout
    assert not (tmp_path / "x.json").exists()


def test_bench_speed_hands_every_infer_attention_to_bench_infer(tmp_path):
    """`--infer-attn bf16,fp8 --infer-lin bf16,fp8t` reaches bench_infer with each (linear, attention) pair. The
    2026-12-07 22:11 UTC H100 call lost its FP8 rows (and the rest of the run) to a TypeError in the dispatch, outside
    the per-row guard. On a CPU each row fails inside bench_infer (no CUDA); the run records all four failures and
    goes on. A value bench_infer does not know is refused by it, by name."""
    out = tmp_path / "o.json"

    def run(*extra):
        p = subprocess.run([sys.executable, str(BENCH / "bench_speed.py"), "run", "--data", str(tmp_path), "--parts",
                            "infer", "--infer-views", "4", "--infer-modes", "fast", "--out", str(out), *extra],
                           capture_output=True, text=True, cwd=REPO, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(REPO), "BENCH_SMOKE": "1"})
        assert p.returncode == 0, p.stdout + p.stderr
        return json.loads(out.read_text())["errors"]

    errors = run("--infer-attn", "bf16,fp8", "--infer-lin", "bf16,fp8t")
    assert len(errors) == 4
    assert all("in bench_infer" in e and "unexpected keyword" not in e for e in errors), errors
    errors = run("--infer-lin", "fp4")
    assert len(errors) == 1 and "lin 'fp4': bf16, fp8 (rowwise) or fp8t (tensorwise)" in errors[0], errors


def test_speed_benchmarks_find_the_checkouts_speed_settings(tmp_path):
    """bench_speed's `_fast_module` finds training/models/fast.py in this checkout and training/fast.py in an old
    one (--tree), and raises for a checkout with neither; the 2026-12-07 H100 call measured `small` and `base`
    eager because the check compared training/models/ with training/ and always failed."""
    probe = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; from speed_kernels import _fast_module\n"
             "try:\n    print(_fast_module().__name__)\nexcept ImportError as e:\n    print('ImportError', e)")

    def find(tree: Path) -> str:
        p = subprocess.run([sys.executable, "-c", probe, str(tree), str(BENCH)], capture_output=True, text=True,
                           cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": ""})
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    assert find(REPO) == "training.models.fast"
    old = tmp_path / "old" / "training"
    old.mkdir(parents=True)
    (old / "__init__.py").write_text("")
    (old / "fast.py").write_text("def setup_model(*a, **k):\n    return 'old'\n")
    assert find(old.parent) == "training.fast"
    (old / "fast.py").unlink()
    assert find(old.parent).startswith("ImportError no speed-settings module")


def test_dry_run_every_stage_on_two_gpus():
    out = dry(*device.STAGES, "--gpus", "0,1", "--cores", "32", "--l4gm-headdim", "l4gm-base",
              "--learn-presets", "small l4gm-small", "--ddp-variants", "default nosplit+bucket100")
    for text in ("setup-install", "gsplat.cuda._backend", "random-lpips", "--tree .scratch/helper-gpu/before",
                 "--parts curve", "prep-lrm4d", "python3 -m training --shards /tmp/bench/lrm4d_shards",
                 "tests/training/test_raster_parity.py", "-m gpu tests/training",
                 "--only-variants --variants l4gm-base",
                 "gpu_learn.py --train .trainpack/train", "--preset l4gm-small", "ddp_checks.py scale",
                 "--variant nosplit+bucket100", "ddp_checks.py uneven", "ddp_checks.py resume", "ddp_checks.py eval",
                 "data_engine_experiment.py round0", "--concurrent 15", "data_engine_experiment.py report"):
        assert text in out, text
    assert "CUDA_VISIBLE_DEVICES=0,1 python3 benchmarks/ddp_checks.py scale" in out
    assert "taskset -c 16-31" in out and "taskset -c 0-15" in out
    learn = [x for x in out.splitlines() if x.startswith("[wave") and "learn/learn-" in x and "table" not in x]
    assert len({x.split("]")[0] for x in learn}) == 1  # both families start together, one GPU each
    assert "| learn | learn-table | - |" in out  # the summary table comes last


def test_dry_run_single_gpu_skips_multi_gpu_checks():
    out = dry("ddp", "--gpus", "0")
    assert "skip ddp/ddp-scale-base-2-default: needs 2 GPU(s), 1 given" in out
    assert "CUDA_VISIBLE_DEVICES=0 python3 benchmarks/ddp_checks.py scale" in out  # the 1-GPU baselines still run


def test_dry_run_budget_and_cpu_data_engine():
    out = dry("learn", "--gpus", "0", "--budget-s", "150")
    assert "skip learn/learn-small" in out and "training minutes would be too short" in out
    out = dry("data-engine", "--gpus", "none", "--de-device", "cpu", "--de-seeds", "0", "--de-arms", "control pool")
    assert "--device cpu" in out and "CUDA_VISIBLE_DEVICES" not in out


# -- real runs of CPU commands ------------------------------------------------------------------------------


def test_runner_runs_commands_with_timeouts_markers_and_collection(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir()
    (work / "made.txt").write_text("x")
    grandchild = tmp_path / "grandchild.pid"
    # the grandchild starts a session of its own, as torchrun's ranks do: killing the job's group misses it
    hang = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
            "start_new_session=True);"
            f"open({str(grandchild)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    jobs = [
        Job("write", "t", [sys.executable, "-c", f"open({str(work / 'r.json')!r}, 'w').write('{{}}'); print('hi')"],
            marker=str(work / "w.made"), collect=[(str(work / "r.json"), "t/r.json")], headline=lambda: "read back"),
        Job("cached", "t", ["false"], marker=str(work / "made.txt")),
        Job("hang", "t", [sys.executable, "-c", hang], max_s=3, min_s=1),
        Job("fails", "t", [sys.executable, "-c", "raise SystemExit(3)"], after=("hang",)),
        Job("blocked", "t", ["true"], needs=("fails",)),
    ]
    lines = []
    t = time.monotonic()
    results = {r.job.name: r for r in Runner(jobs, [], 60, out, REPO, say=lines.append).run()}
    assert time.monotonic() - t < 30
    assert results["write"].status == "ok" and (work / "w.made").exists()
    assert json.loads((out / "t" / "r.json").read_text()) == {}
    assert "hi" in (out / "t" / "write.log").read_text()
    assert results["cached"].status == "made before"
    assert results["hang"].status == "timeout" and results["hang"].rc == 124
    pid = int(grandchild.read_text())
    time.sleep(0.5)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert results["fails"].status == "failed" and results["fails"].rc == 3
    assert results["blocked"].status == "skipped" and "fails" in results["blocked"].note
    assert any("end t/write: ok" in x and "read back" in x for x in lines)


def test_main_on_a_cpu_host_then_keep(tmp_path, capsys):
    out = tmp_path / "out"
    rc = device.main(["gputests", "--gpus", "none", "--no-setup", "--out", str(out), "--pack", "always"])
    assert rc == 0  # a skipped stage is no failure
    table = capsys.readouterr().out
    assert "| gputests | gputests | - |" in table and "needs 1 GPU(s), 0 given" in table
    assert sorted(p.name for p in out.iterdir()) == ["results.tgz", "run.json", "runner.log", "summary.md"]
    run = json.loads((out / "run.json").read_text())
    assert run["stages"] == ["gputests"] and run["jobs"][0]["status"] == "skipped"
    (out / "env.txt").write_text("0, NVIDIA H100 80GB HBM3, 81559 MiB, 580.1, 1980 MHz\n")
    results = tmp_path / "results"
    line = keep(out, "2026-12-07-h100-gputests", results)
    assert line.startswith("- `2026-12-07-h100-gputests/`: stages gputests;")
    assert "NVIDIA H100 80GB HBM3" in line and "`python3 benchmarks/device.py gputests --gpus none" in line
    assert (results / "INDEX.md").read_text().splitlines()[-1] == line
    with pytest.raises(SystemExit, match="exists"):
        keep(out, "2026-12-07-h100-gputests", results)
    with pytest.raises(SystemExit, match="DATE-CARD-WHAT"):
        keep(out, "Bad Name", results)


def test_pack_keeps_the_summary_files(tmp_path):
    for i in range(9):
        (tmp_path / "s" / f"f{i}.txt").parent.mkdir(exist_ok=True)
        (tmp_path / "s" / f"f{i}.txt").write_text(str(i))
    (tmp_path / "summary.md").write_text("t")
    assert needs_pack(tmp_path)
    pack(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.tgz", "summary.md"]
    with tarfile.open(tmp_path / "results.tgz") as tf:
        assert len([m for m in tf.getnames() if m.startswith("s/f")]) == 9
    deep = tmp_path / "d"
    (deep / "a" / "b" / "c").mkdir(parents=True)
    (deep / "a" / "b" / "c" / "x").write_text("1")
    assert needs_pack(deep)


# -- the headline readers on stored device results ----------------------------------------------------------


def test_headline_readers_on_stored_results(tmp_path):
    speed = common.speed_line(RESULTS / "2026-11-29-h200x2-speed2" / "call3-base-after.json")
    assert "MFU" in speed and "infer" in speed
    assert "l4gm-base nh8" in common.l4gm_line(RESULTS / "2026-11-29-h200x2-followup" / "l4gm_headdim.json")
    learn = common.learn_line(RESULTS / "2026-11-29-h200x2-speed2" / "call2-learn-hd64-s0.json")
    assert "'psnr_obj'" in learn and "'steps'" in learn
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": 5, "samples_per_s": 1.0, "step_time_s": 9.0, "loss": 1.0, "mse": 1.0},
            {"step": 10, "samples_per_s": 4.0, "step_time_s": 0.5, "data_wait_s": 0.01, "loss": 0.5, "mse": 0.25}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    line = common.metrics_line(run, "base on 1 GPU")
    assert line.startswith("base on 1 GPU: steps 10, samples/s 4.0, step 500 ms, data wait 10.0 ms")
    assert common.speed_line(tmp_path / "absent.json") == "no result"
    (tmp_path / "l4gm.json").write_text(json.dumps({"training": [{"error": "OOM"}], "inference": [
        {"preset": "l4gm-base", "heads": 8, "frames": 16, "setup": "compiled", "total_s": 0.2}]}))
    assert common.l4gm_line(tmp_path / "l4gm.json") == "l4gm-base nh8 16f compiled total 0.2 s; 1 error(s)"


# -- the DDP checks on two gloo ranks (the device runs them on GPUs) ----------------------------------------


@pytest.mark.slow
def test_ddp_checks_kill_resume_and_eval_on_two_cpu_ranks(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

    def run(*args):
        p = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        return p.stdout

    data, ckpt = tmp_path / "uneven", tmp_path / "resume"
    run(str(BENCH / "ddp_data.py"), "uneven", str(data), "--sizes", "4,2,1", "--size", "32")
    out = run(str(BENCH / "ddp_checks.py"), "resume", "--data", str(data), "--run", str(ckpt), "--preset", "tiny",
              "--size", "32", "--timeout", "300")
    # the killed run's ranks are gone (they run in sessions of their own): the resume starts from step 20 at most
    assert "killed at checkpoints:" in out and "step-00000020.pt" in out
    assert out.strip().splitlines()[-1] == "metric steps [5, 10, 15, 20, 25, 30, 35, 40, 45, 50] ok"
    out = run(str(BENCH / "ddp_checks.py"), "eval", "--data", str(data), "--run", str(ckpt), "--tmp", str(tmp_path),
              "--timeout", "300")
    assert "same keys/order/nulls True, pairs equal True" in out.strip().splitlines()[-1]


def test_bench_speed_refuses_an_unknown_variant_key_before_it_runs(tmp_path):
    """`bench_speed.py`'s variants share the L4GM benchmark's strict parser (benchmarks/common.py): a key outside
    the ones speed_train.Setup reads fails by name before anything runs (before, `small:lpevry=4` would have timed
    the preset's default under the variant's name). Every key the recorded commands use is accepted."""
    from speed_kernels import KEYS, parse_variant

    assert parse_variant("small:lpevery=4:lpsize=64") == {"preset": "small", "spec": "small:lpevery=4:lpsize=64",
                                                          "lpevery": "4", "lpsize": "64"}
    for spec in ("base:fp8=tensorwise", "small:packed=1:tile=32", "base:nh=8:bs=12", "small:head=1",
                 "small:cudnnbench=1", "base:ckpt=0:compile=0:budget=0.5:attn=cudnn:lpbf16=0"):
        parse_variant(spec)
    assert set(KEYS) >= {"bs", "lpevery", "fp8", "packed"}
    out = tmp_path / "o.json"
    p = subprocess.run([sys.executable, str(BENCH / "bench_speed.py"), "run", "--data", str(tmp_path), "--parts",
                        "train", "--variants", "small", "small:lpevry=4", "--out", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO), "BENCH_SMOKE": "1"})
    assert p.returncode != 0 and "'lpevry=4' is not KEY=VALUE with KEY one of bs" in p.stdout + p.stderr
    assert not out.exists()
