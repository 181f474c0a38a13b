"""Processes of this machine read from ``/proc`` (Linux; psutil is not a dependency): what the local clusters and
their tests need to find and stop exactly the Ray processes they started, never another Ray on the machine.
No Ray import."""

from __future__ import annotations

import os
import signal
import socket
import time


def processes() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, command line)}`` of every process that can be read."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        out[int(entry)] = (ppid, cmd)
    return out


def with_descendants(roots: set[int], procs: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """``roots`` and all their descendants (this process excluded), sorted."""
    procs = processes() if procs is None else procs
    found = set(roots)
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in procs.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    found.discard(os.getpid())
    return sorted(found)


def naming(markers: list[str], procs: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """The processes whose command line contains one of ``markers`` (e.g. a Ray temp folder), with their
    descendants (the worker processes, whose command lines no longer name it)."""
    procs = processes() if procs is None else procs
    return with_descendants({pid for pid, (_, cmd) in procs.items() if any(m in cmd for m in markers)}, procs)


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop(pids: list[int], sig: int = signal.SIGTERM, timeout: float = 15, poll: float = 0.3) -> None:
    """Send ``sig`` to ``pids``; SIGKILL those still running after ``timeout`` seconds."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.time() + timeout
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(poll)
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on the loopback now (for the processes of one more local Ray node)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports
