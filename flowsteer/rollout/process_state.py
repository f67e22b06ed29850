"""`ProcessState`: the trainer-owned process settings that building an in-process engine changes.

vLLM's CPU worker, built inside the trainer's process, replaces ``torch.set_num_threads`` with a
no-op, sets its own thread count and reseeds the global Python, NumPy and torch generators. The
trainer's sampling order and CPU throughput must not depend on whether an engine was built, so
`VLLMEngine.start` saves this state before vLLM and restores it after.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class ProcessState:
    """Thread count, the real ``torch.set_num_threads`` and the global RNG states."""

    num_threads: int
    set_num_threads: Any
    python_rng: Any
    numpy_rng: Any
    torch_rng: torch.Tensor
    cuda_rng: list[torch.Tensor] | None

    @classmethod
    def capture(cls) -> ProcessState:
        """The process's state now."""
        return cls(
            num_threads=torch.get_num_threads(),
            set_num_threads=torch.set_num_threads,
            python_rng=random.getstate(),
            numpy_rng=np.random.get_state(),
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        )

    def restore(self) -> None:
        """Put the captured state back (the real ``set_num_threads`` first, then the count)."""
        torch.set_num_threads = self.set_num_threads
        torch.set_num_threads(self.num_threads)
        random.setstate(self.python_rng)
        np.random.set_state(self.numpy_rng)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)


__all__ = ["ProcessState"]
