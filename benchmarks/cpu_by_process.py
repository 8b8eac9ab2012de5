"""CPU seconds each process on this machine spent while one command ran (Linux /proc).

    python benchmarks/cpu_by_process.py -- pipeline -q render --manifest M --shard 0 --out DIR ...

Samples every process's utime+stime (children included) twice a second and prints the processes that
used more than 0.05 CPU seconds, most first: for a Ray render, the actor, the driver and Ray's daemons.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def snapshot() -> dict[int, tuple[str, float]]:
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2:].split()
        out[int(d.name)] = (cmd or stat[stat.index("(") + 1: stat.rindex(")")], sum(int(x) for x in f[11:15]) / TICK)
    return out


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        raise SystemExit(__doc__)
    base = snapshot()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last: dict[int, tuple[str, float]] = {}
    while proc.poll() is None:
        last.update(snapshot())  # keeps the last reading of processes that have exited since
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    used = sorted(((t - (base[pid][1] if pid in base and base[pid][0] == cmd else 0.0), cmd)
                   for pid, (cmd, t) in last.items() if pid != os.getpid()), reverse=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(f"{wall:.1f} s wall, exit {proc.returncode}; {total:.2f} CPU s in the command and the children it waited for")
    for cpu, cmd in used:
        if cpu > 0.05:
            print(f"{cpu:8.2f} s  {cmd[:100]}")


if __name__ == "__main__":
    main()
