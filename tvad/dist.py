"""Several processes under `accelerate launch` (or torchrun): rank, device, sharding, gathering, barriers.

Every stage calls these instead of asking torch.distributed itself. Without a launcher (no
WORLD_SIZE in the environment, or WORLD_SIZE=1) each function is the single-process identity:
`shard(xs)` is `list(xs)`, `gather_shards` returns its input, `barrier` does nothing, `device("cuda")`
is cuda, and nothing initialises a process group, so the one-process path behaves as before.

Under a launcher the process group is accelerate's (`accelerate.PartialState`: nccl on GPUs, gloo on
CPU with ACCELERATE_USE_CPU=1), created on first use.

    xs_here = shard(xs)                        # this rank's items: xs[rank::world]
    ys = gather_shards([f(x) for x in xs_here], len(xs))   # every rank: [f(x) for x in xs], in order
    if is_main(): write(...)                   # rank 0 writes, the others wait at the next barrier()
    barrier()

`torch` and `accelerate` are imported inside the functions, so `import tvad` stays light.
"""

from __future__ import annotations

import os
from typing import Any, Sequence


class LaunchError(RuntimeError):
    """A multi-process launch this machine cannot serve (more processes than devices)."""


def world_size() -> int:
    """Processes in this launch (1 without a launcher)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return int(os.environ.get("RANK", "0") or 0) if launched() else 0


def local_rank() -> int:
    """This process's rank on its machine (its GPU index)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0) if launched() else 0


def launched() -> bool:
    """True under a launcher with several processes."""
    return world_size() > 1


def is_main() -> bool:
    """Rank 0 (the only writer of shared files under a launch); True without a launcher."""
    return rank() == 0


def _state():
    """accelerate's PartialState: the process group (initialised once, on first use)."""
    from accelerate import PartialState

    return PartialState()


def device(requested: str | Any = "auto"):
    """The torch.device a model of this process goes to. Without a launcher: `requested` as given
    ("auto": cuda when available, else cpu). Under a launcher, "auto", "cuda" and "cuda:0" mean this
    process's own GPU, cuda:LOCAL_RANK (accelerate's device), so no two ranks load onto one GPU;
    "cpu" stays cpu; another explicit "cuda:N" is a `LaunchError` (every rank would share it)."""
    import torch

    req = str(requested)
    if not launched():
        if req == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(req)
    if req == "cpu":
        return torch.device("cpu")
    if req in ("auto", "cuda", "cuda:0"):
        if not torch.cuda.is_available():
            if req == "auto":
                return torch.device("cpu")
            raise LaunchError(f"device {req!r} under a {world_size()}-process launch, but no CUDA GPU is "
                              "available here (use device cpu, or launch with --cpu / ACCELERATE_USE_CPU=1)")
        check_devices(world_size())
        dev = _state().device  # accelerate's cuda:LOCAL_RANK, also made the current CUDA device (collectives use it)
        if dev.type != "cuda":
            raise LaunchError(f"device {req!r}: this {world_size()}-process launch runs on {dev.type} "
                              "(ACCELERATE_USE_CPU / --cpu is set); use device cpu")
        return dev
    raise LaunchError(f"device {req!r} under a {world_size()}-process launch: every rank would use that one "
                      "device; give 'cuda' (each rank its own GPU, cuda:LOCAL_RANK) or 'cpu'")


def check_devices(num_processes: int, cpu: bool = False) -> None:
    """A `LaunchError` when `num_processes` GPU processes are asked on a machine with fewer GPUs
    (on one machine each process needs its own). CPU processes (`cpu=True`) are always allowed."""
    import torch

    if cpu or num_processes <= 1:
        return
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        raise LaunchError(f"{num_processes} GPU processes asked, but this machine has no CUDA GPU "
                          "(launch CPU processes: --cpu / use_cpu: true / ACCELERATE_USE_CPU=1)")
    if num_processes > n:
        raise LaunchError(f"{num_processes} processes asked, but this machine has {n} CUDA GPU(s): "
                          f"set num_processes <= {n} in the accelerate config")


def barrier() -> None:
    """Every rank waits here for the others (nothing without a launcher)."""
    if launched():
        _state().wait_for_everyone()


def shard(items: Sequence) -> list:
    """This rank's share of `items`: items[rank::world] (all of them without a launcher)."""
    items = list(items)
    return items[rank()::world_size()] if launched() else items


def gather_shards(mine: list, n: int) -> list:
    """The per-item results of every rank's `shard` of an n-item sequence, back in the original
    order, on every rank. `mine`: this rank's results, one per item of `shard(range(n))` (a list of
    lists is fine: one entry per item). Without a launcher: `mine` unchanged."""
    if not launched():
        return list(mine)
    import torch.distributed as dist

    _state()
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, list(mine))
    out: list = [None] * n
    for r, part in enumerate(parts):
        idx = range(r, n, world_size())
        if len(part) != len(idx):
            raise RuntimeError(f"rank {r} returned {len(part)} results for its {len(idx)} items")
        for i, v in zip(idx, part):
            out[i] = v
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (obj unchanged without a launcher)."""
    if not launched():
        return obj
    import torch.distributed as dist

    _state()
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wait_until(done, what: str, poll_s: float = 2.0) -> None:
    """Every rank polls `done()` (e.g. "every clip's file is in the cache") until it is true, then
    meets the others at a barrier. A poll, not one long collective: ranks whose shards take hours
    longer than another's do not run into the process group's timeout. Nothing without a launcher."""
    import time

    if not launched():
        return
    while not done():
        time.sleep(poll_s)
    barrier()


def shutdown() -> None:
    """End of a launched script: wait for every rank, then close the process group (a process that
    exits while gloo's threads still run can abort with "terminate called without an active
    exception"). Nothing without a launcher or before the group exists."""
    if not launched():
        return
    import torch.distributed as tdist

    if tdist.is_available() and tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()
