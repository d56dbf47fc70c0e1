"""Devices, precision and determinism: the low layer every other one may use (it imports nothing of ganforge
but its errors).

`device=auto` means the first CUDA GPU when there is one, else the CPU; `--device`/`device=` override it, and
asking for CUDA where there is none is a sentence, not a crash. `deterministic_kernels` is what
`deterministic=true` switches on while training runs.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import torch

from ganforge.errors import GanforgeError


class DeviceError(GanforgeError, ValueError):
    pass


def device_kind(requested: str) -> str:
    """"cuda" or "cpu": what `device=` will resolve to, needed before the process group starts."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested).type


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    if requested == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device=cuda was asked for, but PyTorch sees no CUDA GPU. Use device=auto or device=cpu.")
    return device


def pick_precision(requested: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32."""
    if requested == "fp32":
        return None
    if requested == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        # Measured on a 2-core avx512_bf16 CPU (torch 2.13, DCGAN-64, batch 64): bf16 autocast ran at
        # 65 images/s against 84 for fp32 + channels_last, so the CPU default is fp32.
        return None
    if requested == "fp16" and device.type == "cpu":
        raise DeviceError("precision=fp16 needs a GPU; on a CPU use bf16 or fp32.")
    if requested == "bf16" and device.type == "cpu" and not _cpu_has_bf16():
        print("note: this CPU has no bf16 instructions; precision=bf16 will be slow (fp32 is faster here).")
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[requested]


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextmanager
def deterministic_kernels(enabled: bool, device: torch.device):
    """Kernels that give the same bits every time, while training runs: deterministic algorithms and, on a
    CPU, one thread (multi-threaded CPU kernels split their sums differently from run to run). The process's
    own settings come back afterwards."""
    if not enabled:
        yield
        return
    threads, algorithms = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    benchmark = torch.backends.cudnn.benchmark
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's own condition for determinism
    torch.use_deterministic_algorithms(True, warn_only=True)  # an op without such a kernel warns, by name
    torch.backends.cudnn.benchmark = False
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(algorithms)
        torch.backends.cudnn.benchmark = benchmark


def choose_device(requested: str | torch.device = "auto") -> torch.device:
    """'auto', 'cpu', 'cuda' or 'cuda:N' -> a device this machine has; otherwise a sentence saying what does."""
    if isinstance(requested, torch.device):
        requested = str(requested)
    text = str(requested).strip().lower()
    try:
        device = pick_device(text)  # "auto", and a clear error for CUDA on a machine without it
    except RuntimeError:  # torch.device's "Expected one of cpu, cuda, ..." for a name that is no device
        raise DeviceError(f"device {requested!r} is not a device: use auto, cpu, cuda or cuda:N.") from None
    if device.type == "mps" and torch.backends.mps.is_available():
        return device
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {requested!r}: ganforge runs on auto, cpu, cuda or cuda:N.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise DeviceError(f"device {requested!r}: this machine has {count} CUDA GPU(s), cuda:0 to "
                             f"cuda:{count - 1}.")
    return device
