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
    handle = _handle(device) if nvml is not None else None
    if handle is not None:
        out["gpu/util"] = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        out["gpu/mem_used_gib"] = nvml.nvmlDeviceGetMemoryInfo(handle).used / 2**30
    return out


@lru_cache(maxsize=8)
def _handle(device: torch.device):
    """The NVML handle of a torch CUDA device (looked up once). Torch numbers the devices that CUDA_VISIBLE_DEVICES
    leaves visible (Ray sets it per worker), NVML numbers them all: match by UUID, never by index."""
    nvml = _nvml()
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        return nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
    except Exception:  # an older driver or a MIG slice: no per-device figures rather than another GPU's
        return None
