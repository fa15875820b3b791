"""What ``googlenet-suite gpu-check`` asks of torch itself: the device torch sees, and full fp32 for a process.

The check (``googlenet_suite/gpu_check/``) is framework-neutral: it runs this builder through the builder
contract (``docs/builders.md``) and the bench runner (``impl_torch.bench``); only these questions need torch.
"""

from __future__ import annotations

import subprocess

import torch

from .api import ieee_fp32_settings


def cuda_available() -> bool:
    return torch.cuda.is_available()


def versions() -> dict:
    """torch's version and the CUDA version it was built for (None for a CPU build)."""
    return {"torch": torch.__version__, "torch_cuda": torch.version.cuda}


def full_fp32() -> dict:
    """TF32 off for cuBLAS matmuls and cuDNN convolutions, for the rest of this process. Returns what was set.

    Only for a process that does not compile: on torch 2.9-2.11 a setting made through the fp32_precision API
    breaks torch.compile's lowering with "mix of the legacy and new APIs" (pytorch/pytorch#166387)."""
    settings = ieee_fp32_settings()
    for owner, name, value in settings:
        setattr(owner, name, value)
    (cudnn, name, _), (matmul, _, _) = settings
    return {"api": name, "cudnn": getattr(cudnn, name), "matmul": getattr(matmul, name)}


def environment(*, on_gpu: bool) -> dict:
    """torch, CUDA and cuDNN versions; on a GPU also its name, compute capability, memory and driver."""
    env = {**versions(), "cuda_available": torch.cuda.is_available(),
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    if not on_gpu:
        return env
    props = torch.cuda.get_device_properties(0)
    env.update(device="cuda:0", device_name=torch.cuda.get_device_name(0),
               compute_capability=".".join(map(str, torch.cuda.get_device_capability(0))),
               device_memory_gib=round(props.total_memory / 2**30, 1), device_count=torch.cuda.device_count(),
               driver=_driver())
    return env


def _driver() -> str | None:
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = smi.stdout.strip().splitlines()
    return lines[0] if smi.returncode == 0 and lines else None
