"""What both training stages share: the simulated kill of the resume tests, torch's thread count."""

from __future__ import annotations

import torch


class Killed(RuntimeError):
    """Raised by stage 1's `train` and stage 2's `train_phase` with `stop_after_steps=k` to simulate a
    kill after k optimizer steps (the resume tests)."""


class torch_threads:
    """Set torch's intra-op threads for a block (CPU only; n <= 0 or on GPU: unchanged)."""

    def __init__(self, n: int):
        self.n = int(n)
        self.old: int | None = None

    def __enter__(self):
        if self.n > 0 and not torch.cuda.is_available():
            self.old = torch.get_num_threads()
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            torch.set_num_threads(self.old)
        return False
