"""TensorBoard event files for a training run, on local storage or ``s3://`` (no Ray here).

TensorBoard writers need a local file; runs keep theirs on storage. :class:`TensorBoardLog` writes the event file
in a local temporary folder and copies it to ``<uri>/`` on :meth:`sync` (at checkpoints and at the end) and
:meth:`close`. A resumed run writes a new event file beside the earlier ones (its name carries the host, process
and start time), and TensorBoard shows them as one run: point it at the folder, e.g.
``tensorboard --logdir s3://bucket/runs/<run>/pretrain/tensorboard`` (or a local copy of it).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import tempfile
import time
from typing import Mapping

from mujo import storage

log = logging.getLogger(__name__)


class TensorBoardLog:
    """Scalars to a TensorBoard event file mirrored to ``uri`` (a folder, local or ``s3://``).

    Events are written synchronously (tensorboardX's record format and protobufs, no writer thread), so what
    :meth:`sync` copies is exactly what was logged."""

    def __init__(self, uri: str) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.record_writer import RecordWriter

        self.uri = uri
        self._local = tempfile.mkdtemp(prefix="mujo-tb-")
        # unique per writer: host, process, start time in microseconds (a resumed run adds a file, never replaces)
        self.name = (f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}."
                     f"{time.time_ns() // 1000 % 10**6:06d}")
        self._path = os.path.join(self._local, self.name)
        self._writer = RecordWriter(self._path)
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event) -> None:
        self._writer.write(event.SerializeToString())

    def scalars(self, metrics: Mapping[str, object], step: int) -> None:
        """Every finite number of ``metrics`` as a scalar at ``step`` (strings and other values are skipped)."""
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        values = []
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or key == "step":
                continue
            if math.isfinite(float(value)):
                values.append(Summary.Value(tag=key, simple_value=float(value)))
        if values:
            self._write(Event(wall_time=time.time(), step=int(step), summary=Summary(value=values)))

    def sync(self) -> str | None:
        """Flush and copy the event file to ``uri``; returns where it went (None: the copy failed). A storage
        problem is logged, not raised: TensorBoard files never stop a training run."""
        self._writer.flush()
        dest = storage.join(self.uri, self.name)
        try:
            with open(self._path, "rb") as handle:
                storage.write_bytes(dest, handle.read())
        except (OSError, storage.StorageError) as exc:
            log.warning("could not copy TensorBoard events to %s: %s", dest, exc)
            return None
        return dest

    def close(self) -> str | None:
        dest = self.sync()
        self._writer.close()
        shutil.rmtree(self._local, ignore_errors=True)
        return dest


def read_scalars(path: str) -> dict[str, list[tuple[int, float]]]:
    """The scalars of one event file (local path), ``{tag: [(step, value), ...]}``: for tests and quick checks
    without TensorBoard installed."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, list[tuple[int, float]]] = {}
    with open(path, "rb") as handle:
        data = handle.read()
    pos = 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        record = data[pos + 12:pos + 12 + length]
        pos += 12 + length + 4
        event = Event.FromString(record)
        for value in event.summary.value:
            out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out
