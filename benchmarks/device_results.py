"""A device run's record (benchmarks/device.py): the summary table, run.json, the results archive when more
files were written than a device call brings back; and, on the CPU box, `keep`: a call's files into
benchmarks/results/NAME/ with one line for benchmarks/results/INDEX.md.

    python benchmarks/device.py keep FILES_AT --name 2026-12-07-h100-speed [--results benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tarfile
from pathlib import Path

from common import ROOT
from device_run import Result, Runner

MAX_BACK = 8  # files a device call brings back
KEEP = ("summary.md", "runner.log", "run.json", "env.txt")  # left beside the archive
NAME_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}-[a-z0-9][a-z0-9._-]*$")


def summary_table(results: list[Result], runner: Runner | None = None) -> str:
    """The run as a Markdown table: stage, job, GPUs, start, seconds, status, headline."""
    rows = ["| stage | job | GPUs | start s | seconds | status | headline |", "|---|---|---|---|---|---|---|"]
    for r in results:
        head = runner.headline(r) if runner else r.note
        head = (head or "").replace("|", "/").replace("\n", " ")[:400]
        status = r.status + (f" (rc {r.rc})" if r.rc not in (None, 0) else "")
        rows.append(f"| {r.job.stage} | {r.job.name} | {','.join(map(str, r.gpus)) or '-'} | {r.start_s} | "
                    f"{r.seconds} | {status} | {head} |")
    return "\n".join(rows) + "\n"


def files_under(out: Path) -> list[Path]:
    return sorted(p for p in Path(out).rglob("*") if p.is_file() or p.is_symlink())


def needs_pack(out: Path) -> bool:
    """More files than a device call brings back, or one deeper than two folders ($OUT/a/b/file)."""
    files = files_under(out)
    return len(files) > MAX_BACK or any(len(p.relative_to(out).parts) > 3 for p in files)


def pack(out: Path) -> Path:
    """Everything under `out` but KEEP into out/results.tgz (written outside first: tar would read itself)."""
    out = Path(out)
    tmp = Path("/tmp") / f"device_results_{os.getpid()}.tgz"
    with tarfile.open(tmp, "w:gz") as tf:
        for p in sorted(out.iterdir()):
            if p.name not in KEEP and p.name != "results.tgz":
                tf.add(p, arcname=p.name)
    for p in list(out.iterdir()):
        if p.name not in KEEP and p.name != "results.tgz":
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    dest = out / "results.tgz"
    shutil.move(str(tmp), dest)
    return dest


def write_record(out: Path, results: list[Result], meta: dict, runner: Runner | None) -> None:
    """run.json: what ran (the runner's arguments, the host) and every job's command, place, time and result."""
    rows = [{"stage": r.job.stage, "job": r.job.name, "gpus": r.gpus, "start_s": r.start_s, "seconds": r.seconds,
             "status": r.status, "rc": r.rc, "cmd": r.cmd, "headline": runner.headline(r) if runner else r.note}
            for r in results]
    (Path(out) / "run.json").write_text(json.dumps({**meta, "jobs": rows}, indent=1))


# -- keep: a call's files into benchmarks/results/ ------------------------------------------------------


def card(env_text: str) -> str:
    """The GPU model(s) named in env.txt's nvidia-smi lines, with a count: '2 x NVIDIA H200'."""
    names = re.findall(r"^\d+, (NVIDIA [^,]+),", env_text, re.M)
    if not names:
        return "card not recorded"
    uniq = sorted(set(names))
    return ", ".join(f"{names.count(n)} x {n}" if names.count(n) > 1 else n for n in uniq)


def index_line(name: str, dest: Path) -> str:
    run = json.loads((dest / "run.json").read_text()) if (dest / "run.json").exists() else {}
    env = (dest / "env.txt").read_text(errors="replace") if (dest / "env.txt").exists() else ""
    cmd = " ".join(run.get("argv", ["benchmarks/device.py", "?"]))
    return (f"- `{name}/`: stages {', '.join(run.get('stages', ['?']))}; {run.get('date_utc', '?')} UTC; "
            f"{card(env)}; `python3 {cmd}`")


def keep(src: Path, name: str, results: Path) -> str:
    if not NAME_RE.match(name):
        raise SystemExit(f"--name {name!r}: use DATE-CARD-WHAT, e.g. 2026-12-07-h100-speed (lower case)")
    if not (src / "run.json").exists():
        raise SystemExit(f"{src}: no run.json (not a benchmarks/device.py output folder)")
    dest = results / name
    if dest.exists():
        raise SystemExit(f"{dest} exists: choose another --name")
    dest.mkdir(parents=True)
    for p in src.iterdir():
        if p.name == "results.tgz":
            with tarfile.open(p) as tf:
                tf.extractall(dest, filter="data")
        elif p.is_dir():
            shutil.copytree(p, dest / p.name)
        else:
            shutil.copy2(p, dest / p.name)
    line = index_line(name, dest)
    index = results / "INDEX.md"
    text = index.read_text() if index.exists() else "# Raw results of device calls\n\n"
    index.write_text(text.rstrip("\n") + "\n" + line + "\n")
    return line


def keep_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/device.py keep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="the device call's files (files_at)")
    ap.add_argument("--name", required=True)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args(argv)
    print(keep(a.src, a.name, a.results))
    return 0
