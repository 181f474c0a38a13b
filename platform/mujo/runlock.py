"""One writer per run folder: a lock file taken by every job that writes a run, released when it ends.

Two jobs with the same ``run_name`` would both start from scratch and interleave their checkpoints in one folder
(a later resume could take either's state). The lock is ``<run>/_run.lock``, created exclusively: ``O_EXCL`` on a
local disk, a conditional put (``If-None-Match: *``) on S3, so of two jobs racing exactly one wins. It holds the
owner (host, pid, start time, command) for the message the loser prints.

A lock left by a job that could not release it (SIGKILL, a lost node) is recognised as stale when it names this
host and a process that no longer exists, and taken over (logged). Anything else is refused with the owner and the
fix: wait, pick another ``run_name``, or delete the lock file when that job is known to be gone. The same process
may take the lock of a run again (a driver that runs several stages of one run). No Ray here.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import sys
import time

from mujo import storage
from mujo.errors import RunLocked

log = logging.getLogger(__name__)
_held: dict[str, dict] = {}  # lock uri -> owner, for this process


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300]}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _create_exclusive(uri: str, body: bytes) -> bool:
    """Create ``uri`` only if it does not exist; False when it does."""
    if not storage.is_s3(uri):
        os.makedirs(os.path.dirname(uri), exist_ok=True)
        try:
            fd = os.open(uri, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        return True
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri[5:].partition("/")
    client = boto3.client("s3", endpoint_url=storage.endpoint_url())
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            return False
        raise storage.StorageError(f"cannot take the run lock {storage.describe(uri)}: {code or exc}") from None
    except BotoCoreError as exc:
        raise storage.StorageError(f"cannot take the run lock {storage.describe(uri)}: {exc}") from None
    return True


def _read(uri: str) -> dict:
    try:
        doc = json.loads(storage.read_bytes(uri))
        return doc if isinstance(doc, dict) else {}
    except (storage.StorageError, ValueError):
        return {}


def _delete(uri: str) -> None:
    fs, path = storage.filesystem(uri)
    try:
        fs.delete_file(path)
    except OSError:
        pass


def acquire(run_dir: str) -> str:
    """Take the run's lock (see the module docstring); returns the lock's uri. :class:`~mujo.errors.RunLocked`
    when another live job holds it."""
    from mujo.run import RunLayout

    uri = RunLayout(run_dir).lock
    if uri in _held:
        return uri
    me = _owner()
    for attempt in range(2):
        if _create_exclusive(uri, json.dumps(me).encode()):
            _held[uri] = me
            if len(_held) == 1:
                atexit.register(release_all)
            return uri
        other = _read(uri)
        same_host = other.get("host") == me["host"]
        if same_host and other.get("pid") == me["pid"]:
            _held[uri] = other  # ours already (taken earlier by this process)
            return uri
        if attempt == 0 and same_host and isinstance(other.get("pid"), int) and not _alive(other["pid"]):
            log.warning("run lock %s was left by process %s (gone; started %s): taking it over",
                        storage.describe(uri), other.get("pid"), other.get("started"))
            _delete(uri)
            continue
        break
    who = (f"process {other.get('pid')} on host {other.get('host')} since {other.get('started')} "
           f"({other.get('command', '?')})") if other else "another job"
    raise RunLocked(f"run folder {storage.describe(run_dir)} is being written by {who}. Wait for that job to end, or "
                    f"use another run_name; if that job is gone (a lost node), delete {storage.describe(uri)}")


def release(uri: str) -> None:
    """Give the lock back (only if it is still ours)."""
    me = _held.pop(uri, None)
    if me is None:
        return
    if _read(uri).get("pid") == me["pid"] and _read(uri).get("host") == me["host"]:
        _delete(uri)


def release_all() -> None:
    for uri in list(_held):
        try:
            release(uri)
        except Exception:  # at exit: never mask the job's own outcome
            log.debug("could not release %s", uri, exc_info=True)


__all__ = ["acquire", "release", "release_all"]
