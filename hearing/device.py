"""Which device and dtype a model runs on: one rule for generation, scoring, evaluation and the app.

Training leaves the choice to accelerate (`align.train --cpu`, `accelerate launch`), which follows the same order.
torch is imported on first use, so command lines can offer DTYPE_CHOICES in `--help` without loading it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DTYPE_NAMES = {"fp16": "float16", "float16": "float16", "half": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16",
               "fp32": "float32", "float32": "float32", "float": "float32"}
DTYPE_CHOICES = ("auto", "fp16", "bf16", "fp32")  # what the command lines and the app offer


def resolve_device_and_dtype(device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> tuple[torch.device, torch.dtype]:
    """The device (cuda, then mps, then cpu) and dtype to run on when not given.

    fp16 on CUDA and MPS (half the memory, tensor cores); fp32 on CPU, where bf16/fp16 convolutions run
    ~100x slower without hardware support (`cpu_has_bf16`). `dtype` may be a torch dtype or "fp16", "bf16", "fp32", "auto".
    """
    import torch

    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} asked for, but torch sees no CUDA GPU (torch {torch.__version__}): use device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {device} asked for, but there are {torch.cuda.device_count()} CUDA GPUs: use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ValueError("device mps asked for, but this torch has no MPS (Apple GPU) support here: use device cpu or auto")
    if isinstance(dtype, str) and dtype != "auto":
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"unknown dtype {dtype!r}: use one of fp16, bf16, fp32 or auto")
        dtype = getattr(torch, DTYPE_NAMES[dtype])
    if dtype is None or dtype == "auto":
        dtype = torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU does not support bf16: use dtype fp16 (or fp32)")
    if device.type == "cpu" and dtype != torch.float32 and not (dtype == torch.bfloat16 and cpu_has_bf16()):
        logger.warning("%s on CPU: half-precision convolutions run ~100x slower than fp32 on CPUs without bf16 hardware; fp32 is advised", dtype)
    return device, dtype


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (Intel AMX or AVX512-BF16). There, bf16 autocast speeds up a training
    step whose time is in matrix products (bench/cpu_precision.py measures it); elsewhere bf16 is emulated and far slower."""
    import torch

    cpu = getattr(torch, "cpu", None)
    probes = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(probe() for probe in probes if probe is not None)
