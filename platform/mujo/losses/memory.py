"""Peak memory of a stretch of code in this process (a training step, a loss forward+backward), CPU or CUDA.

CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what was allocated at the start
(tensors only, not the caching allocator's reserve). CPU (Linux): the resident set's high-water mark (``VmHWM``)
after resetting it through ``/proc/self/clear_refs``, minus the resident set at the start: everything the code
touched (autograd buffers, collective buffers, allocator slack), but also anything another thread of the process
allocated meanwhile. Where neither is available the figure is None.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["PeakMemory"]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_bytes(field: str) -> int | None:
    """``VmRSS`` or ``VmHWM`` of this process in bytes, or None where /proc is not there."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakMemory:
    """``with PeakMemory(device) as peak: ...``; then ``peak.bytes`` (None where not measurable) and
    ``peak.metrics()`` (``{"memory/step_peak_mib": ...}`` or ``{}``).

    On CUDA this resets the device's peak statistics, so a ``max_memory_allocated`` read afterwards is the peak
    since the start of the last measured stretch.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.bytes: int | None = None
        self._baseline: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._baseline = _status_bytes("VmRSS")
        try:
            _CLEAR_REFS.write_text("5")  # reset the peak-RSS mark to the current resident set
        except OSError:
            self._baseline = None
        return self

    def __exit__(self, *exc) -> None:
        if self._baseline is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._baseline
            return
        peak = _status_bytes("VmHWM")
        self.bytes = None if peak is None else max(0, peak - self._baseline)

    def metrics(self, name: str = "memory/step_peak_mib") -> dict[str, float]:
        """The figure in MiB under ``name``, or nothing where it was not measured."""
        return {} if self.bytes is None else {name: self.bytes / 2**20}
