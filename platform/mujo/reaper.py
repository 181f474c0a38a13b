"""A watchdog that ends a local Ray when the job that started it dies without cleaning up (SIGKILL, OOM kill).

A job that starts its own Ray (the embedded default) stops it on every exit it can handle (``ray.shutdown`` at exit;
SIGTERM and SIGINT are turned into a normal exit). After SIGKILL nothing in the driver runs, and Ray's dashboard and
runtime-env agents survive as orphans that ignore SIGTERM. So the job starts this small process first, in its own
session: it records the driver's descendants (the processes of the Ray it started) every ``interval`` seconds and,
once the driver is gone, SIGKILLs the recorded ones that still run (same pid *and* same start time, so a reused
pid is never hit), then exits. When the driver ends normally it finds nothing left and exits too. Linux only (reads
``/proc``); elsewhere it is not started. No Ray import.

Recording alone has a window: a process started after the last look (Ray's agents come up a few seconds after the
raylet) is missed, and when the driver dies the raylet dies with it and those agents are re-parented to init,
untraceable by ancestry. So the watchdog also notes the Ray session folders named on the recorded processes'
command lines (``.../session_<time>_<driver pid>``) and, at the end, kills every process started after the driver
that holds a file open inside one of them (the agents keep their logs there). No other Ray on the machine shares
that folder.

    python -m mujo.reaper <driver pid>
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

PROC = "/proc"
_SESSION = re.compile(r"(/[^\s=]*/session_\d{4}-\d\d-\d\d_[\d\-_]+)")


def _stat(pid: int) -> tuple[int, int] | None:
    """``(parent pid, start time in clock ticks)`` of a process, or None when it is gone."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root``: ``{pid: start time}``."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for name in os.listdir(PROC):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                children.setdefault(st[0], []).append(int(name))
                starts[int(name)] = st[1]
    out: dict[int, int] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in out and pid in starts:
            out[pid] = starts[pid]
            todo += children.get(pid, [])
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"{PROC}/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def session_dirs(pids) -> set[str]:
    """The Ray session folders named on these processes' command lines."""
    return {m.rstrip("/") for p in pids for m in _SESSION.findall(cmdline(p))}


def holding_files_in(folders: set[str], since: int) -> dict[int, int]:
    """Processes started at or after ``since`` (clock ticks) with a file open inside one of ``folders``."""
    out: dict[int, int] = {}
    if not folders:
        return out
    prefixes = tuple(f + "/" for f in folders)
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st is None or st[1] < since:
            continue
        try:
            fds = os.listdir(f"{PROC}/{name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{PROC}/{name}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(prefixes):
                out[int(name)] = st[1]
                break
    return out


def watch(driver: int, interval: float = 0.5) -> int:
    """Run until ``driver`` is gone; then kill what it left. Returns the number of processes killed."""
    me = os.getpid()
    started = _stat(driver)
    seen: dict[int, int] = {}
    folders: set[str] = set()
    while True:
        now = _stat(driver)
        if now is None or (started is not None and now[1] != started[1]):
            break
        new = {p: s for p, s in descendants(driver).items() if p != me and p not in seen}
        seen.update(new)
        folders |= session_dirs(new)
        time.sleep(interval)
    if started is not None:
        seen.update({p: s for p, s in holding_files_in(folders, started[1]).items() if p != me})
    killed = 0
    for pid, start in seen.items():
        st = _stat(pid)
        if st is not None and st[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def start(driver: int | None = None) -> subprocess.Popen | None:
    """Start the watchdog for ``driver`` (default: this process) in its own session; None where ``/proc`` is
    missing."""
    if not os.path.isdir(f"{PROC}/self"):
        return None
    return subprocess.Popen([sys.executable, "-m", "mujo.reaper", str(driver or os.getpid())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a job's process-group SIGTERM must not end the watchdog first
    sys.exit(0 if watch(int(sys.argv[1])) >= 0 else 1)
