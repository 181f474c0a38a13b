"""What a job shows a person, and where everything else goes.

A job's console shows one line per stage start and end with its time, progress lines on long work (files
preprocessed, training steps with loss and samples/s from rank 0, fan-out trials done/running/failed), warnings
and errors of the platform, and the results. Everything else — Ray's own messages, its workers' and actors' output,
C++ core-worker lines, deprecation warnings, full metrics dicts — goes to the run's log file
``<run>/logs/<job>-<time>.log`` (written locally, copied to an ``s3://`` run at exit), which is always complete.
``--verbose`` turns the filtering off: everything goes to the terminal too, as Ray prints it.

How: the process's stdout and stderr (Python's ``sys.stdout``/``sys.stderr`` and file descriptors 1 and 2, which
Ray's C++ core writes to) are pointed at the log file; the console writes to a duplicate of the original terminal
descriptors. No Ray import here.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from mujo import storage
from mujo.run import RunLayout

log = logging.getLogger("mujo")
_CONSOLE: "Console | None" = None


class Console:
    """Stage lines, progress lines and results for a person; see the module docstring."""

    def __init__(self, stream: TextIO, log_file: str | None = None, verbose: bool = False,
                 errors: TextIO | None = None) -> None:
        self.stream = stream  # stage and progress lines, results
        self.errors = errors or stream  # log lines (as stderr carries them), errors
        self.log_file = log_file
        self.verbose = verbose
        self.tty = stream.isatty()
        self._last_progress: dict[str, float] = {}
        self._lock = threading.Lock()

    def echo(self, text: str = "") -> None:
        """A line (or block) for the person, e.g. a results table; also kept in the log file."""
        with self._lock:
            if self._partial():
                self.stream.write("\n")
            self.stream.write(text + "\n")
            self.stream.flush()
        if self.stream is not sys.__stdout__:
            print(text, file=sys.stdout, flush=True)

    def error(self, text: str) -> None:
        """An error for the person (on the terminal's stderr), also kept in the log file."""
        with self._lock:
            if self._partial():
                self.stream.write("\n")
                self._last_progress.clear()
            self.errors.write(text + "\n")
            self.errors.flush()
        if self.errors is not sys.__stderr__:
            print(text, file=sys.stderr, flush=True)

    def _partial(self) -> bool:
        return self.tty and bool(self._last_progress)

    @contextlib.contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        """``▶ name`` now, ``✔ name  12.3 s`` at the end (``✘`` and the time when it raises)."""
        t0 = time.monotonic()
        log.info("▶ %s%s", name, f" ({detail})" if detail else "")
        try:
            yield
        except BaseException:
            log.info("✘ %s failed after %.1f s", name, time.monotonic() - t0)
            raise
        finally:
            self._last_progress.pop(name, None)
        log.info("✔ %s  %.1f s", name, time.monotonic() - t0)

    def progress(self, label: str, done: int, total: int | None = None, every_s: float = 10.0, **extra: Any) -> None:
        """A progress line: rewritten in place on a terminal, at most every ``every_s`` seconds elsewhere (and
        always at the end)."""
        now = time.monotonic()
        finished = total is not None and done >= total
        if not self.tty and not finished and now - self._last_progress.get(label, -1e9) < every_s:
            return
        self._last_progress[label] = now
        parts = [f"{done}/{total}" if total is not None else str(done)]
        parts += [f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in extra.items() if v is not None]
        text = f"  {label}: " + ", ".join(parts)
        with self._lock:
            if self.tty:
                self.stream.write("\r\033[K" + text + ("\n" if finished else ""))
                if finished:
                    self._last_progress.pop(label, None)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        if self.stream is not sys.__stdout__:
            print(text, file=sys.stdout, flush=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class _ConsoleHandler(logging.Handler):
    """The platform's log records (INFO and up) and everyone's errors, shortly, on the console."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("mujo") or record.levelno >= logging.ERROR or self.console.verbose

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.levelno >= logging.WARNING:
                msg = f"{record.levelname.lower()}: {msg}"
            line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {msg}"
            with self.console._lock:
                if self.console._partial():
                    self.console.stream.write("\n")
                    self.console._last_progress.clear()
                self.console.errors.write(line + "\n")
                self.console.errors.flush()
        except Exception:  # a broken terminal must not end the job
            self.handleError(record)


def setup(job: str, run_dir: str | None, verbose: bool = False) -> Console:
    """Route output as the module docstring says, once per process; returns the console. The log file is
    ``<run_dir>/logs/<job>-<time>.log`` (a local temporary file copied there at exit for ``s3://`` runs)."""
    global _CONSOLE
    if _CONSOLE is not None:
        return _CONSOLE
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{job}-{stamp}-{os.getpid()}.log"
    target = storage.join(RunLayout(run_dir).logs, name) if run_dir else None
    if target and not storage.is_s3(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        path = target
    else:
        path = os.path.join(tempfile.mkdtemp(prefix="mujo-log-"), name)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
    file_handler = logging.FileHandler(path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    if verbose:
        console = Console(sys.stdout, path, verbose=True)
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(stderr)
    else:
        sys.stdout.flush()
        sys.stderr.flush()
        term = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
        term_err = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log_fd, 1)  # C-level writes (Ray's core worker, native libraries) and child processes
        os.dup2(log_fd, 2)
        os.close(log_fd)
        out = io.TextIOWrapper(open(1, "wb", buffering=0, closefd=False), write_through=True, encoding="utf-8",
                               errors="replace")
        sys.stdout = sys.stderr = out  # Python-level writes, Ray's forwarded worker output among them
        console = Console(term, path, verbose=False, errors=term_err)
        root.addHandler(_ConsoleHandler(console))
        console.errors.write(f"full log: {target or path}\n")
    logging.captureWarnings(True)  # deprecation and other warnings: to the log file, not the terminal
    if target and storage.is_s3(target):
        atexit.register(_upload, path, target)
    _CONSOLE = console
    return console


def _upload(path: str, target: str) -> None:
    if not storage.was_checked_writable(target):  # the run's storage never answered: nothing to wait for
        return
    try:
        with open(path, "rb") as f:
            storage.write_bytes(target, f.read())
    except Exception:  # at exit: never mask the job's outcome
        pass


def get() -> Console:
    """The process's console (a plain one on stdout when :func:`setup` was not called, e.g. in tests)."""
    return _CONSOLE or Console(sys.stdout)


class ProgressFile:
    """A progress document one process writes (e.g. the Train controller, at each report) and the driver follows:
    a small JSON file on the run's storage. ``follow`` polls it in a thread and hands each new version to
    ``show``."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def write(self, doc: dict) -> None:
        storage.write_json(self.uri, doc)

    @contextlib.contextmanager
    def follow(self, show: Callable[[dict], None], every_s: float = 2.0) -> Iterator[None]:
        stop = threading.Event()
        last: list[Any] = [None]

        def poll() -> None:
            while not stop.wait(every_s):
                self._show_new(show, last)

        thread = threading.Thread(target=poll, daemon=True, name="mujo-progress")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=every_s + 5)
            self._show_new(show, last)

    def _show_new(self, show: Callable[[dict], None], last: list[Any]) -> None:
        try:
            if not storage.exists(self.uri):
                return
            doc = json.loads(storage.read_bytes(self.uri))
        except (storage.StorageError, ValueError):
            return
        if doc != last[0]:
            last[0] = doc
            show(doc)


__all__ = ["Console", "ProgressFile", "get", "setup"]
