"""GPU utilisation and memory through NVML (pynvml, package nvidia-ml-py); absent cleanly where no GPU exists."""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def _nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no driver / library / GPU: NVMLError_LibraryNotFound and friends
        return None


def gpu_metrics(device: torch.device) -> dict[str, float]:
    """``gpu/util``, ``gpu/mem_used_gib``, ``gpu/torch_max_alloc_gib`` for a CUDA device; {} otherwise."""
    if device.type != "cuda":
        return {}
    out = {"gpu/torch_max_alloc_gib": torch.cuda.max_memory_allocated(device) / 2**30}
    nvml = _nvml()
    if nvml is not None:
        handle = nvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        out["gpu/util"] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        out["gpu/mem_used_gib"] = nvml.nvmlDeviceGetMemoryInfo(handle).used / 2**30
    return out
