"""The one place that decides where torch models run.

CUDA with float16 when a GPU is present, else CPU with float32 (and a warning, once,
because users on a laptop should know why a model is slower than on the lecturer's GPU).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class Placement:
    device: torch.device  # where tensors and modules live
    dtype: torch.dtype  # float16 on CUDA, float32 on CPU

    @property
    def fp16(self) -> bool:
        return self.dtype == torch.float16


@lru_cache(maxsize=1)
def placement() -> Placement:
    """Pick CUDA+float16 if available, else CPU+float32.

    Set LIVELEARNER_DEVICE=cpu to force the CPU on a machine with a GPU.
    """
    forced = os.environ.get("LIVELEARNER_DEVICE", "").lower()
    if forced != "cpu" and torch.cuda.is_available():
        return Placement(torch.device("cuda"), torch.float16)
    if forced not in ("", "cpu"):
        warnings.warn(f"LIVELEARNER_DEVICE={forced!r} asked for, but no CUDA device is usable; using CPU.")
    elif not forced:
        warnings.warn("No CUDA GPU found: running on CPU in float32 (slower, same results).", stacklevel=2)
    return Placement(torch.device("cpu"), torch.float32)


def small_cpu_threads() -> int | None:
    """Torch intra-op threads for live inference: 1 on a machine with 2 cores or fewer, else None.

    torch.set_num_threads is process-wide, so every model in the app shares this choice. On a
    2-core laptop one thread is fastest for small models running beside mediapipe and Whisper
    (measured: a face took 21 ms with 2 contended threads, 1 ms with one); on larger machines the
    default (all cores) keeps Whisper fast.
    """
    return 1 if (os.cpu_count() or 1) <= 2 else None
