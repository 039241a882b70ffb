#!/usr/bin/env python3
"""CPU seconds used so far by process trees: `cpu-tree.py NAME=PID ...` prints `NAME=SECONDS ...`.

A tree's time is the process's user + system time, that of its children it has reaped (so
PostgreSQL backends that have exited still count, through the postmaster), and that of its live
descendants. Used by bench-apinode.sh to say where the CPU went during each wrk run.
"""
import os
import sys

tick = os.sysconf("SC_CLK_TCK")
stats = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after "pid (comm)": state ppid ... utime(12) stime(13) cutime(14) cstime(15)
        stats[int(d)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
children = {}
for pid, (ppid, _) in stats.items():
    children.setdefault(ppid, []).append(pid)


def tree(pid):
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += stats[p][1]
            todo += children.get(p, [])
    return total / tick


print(" ".join(f"{name}={tree(int(pid)):.2f}" for name, pid in (a.split("=", 1) for a in sys.argv[1:])))
