"""On the CPU box, after a device call: its files (the tool's files_at folder) into benchmarks/results/NAME/
with results.tgz unpacked, and one line for benchmarks/results/INDEX.md (what, when, card, the command).

    python benchmarks/device.py keep FILES_AT --name 2026-12-07-h100-speed [--results benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tarfile
from pathlib import Path

from common import ROOT

NAME_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}-[a-z0-9][a-z0-9._-]*$")


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
