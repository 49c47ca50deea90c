"""The few collective operations the training loop needs, over ``torch.distributed`` or, for one process,
without it.

Processes are started by torchrun's machinery (``torch.distributed.run``: trainer/ranks.py, or torchrun on
each node), which sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address in the environment; NCCL
joins processes that each drive one GPU, gloo joins CPU processes (how the tests run two).

Why gradients are summed by hand rather than by DistributedDataParallel: a step's loss is normalised by
the response tokens of all its micro-batches on all processes, which are known only after the last
micro-batch; a process may get no sample in a micro-batch (a short last batch, samples that failed to
encode), which DDP's backward hooks cannot take part in; and a run resumes on any number of processes.
One flat all-reduce of the LoRA gradients per optimiser step does all of that (LoRA's gradients are a
few percent of the model; the cost is one collective per step instead of DDP's overlap with backward).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    active: bool = False  # a process group is up
    backend: str = "gloo"

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def collective_device(self) -> str:
        """Where tensors to reduce must be: NCCL reduces this process's GPU's, gloo (and no group) CPU ones."""
        return f"cuda:{self.local_rank}" if self.active and self.backend == "nccl" else "cpu"

    # ---- collectives (no-ops for one process) ----------------------------------------------------------
    def sum_(self, tensor):
        """All-reduce ``tensor`` in place (sum over processes); returns it."""
        if self.active and self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process (checkpoint state read by rank 0 alone: no shared disk needed)."""
        if not (self.active and self.world > 1):
            return obj
        import torch.distributed as dist

        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_tensors(self, tensors: list) -> None:
        """Rank 0's values of ``tensors`` into every process's, in place (one flat broadcast)."""
        if not (self.active and self.world > 1) or not tensors:
            return
        import torch
        import torch.distributed as dist

        flat = torch.cat([t.detach().reshape(-1).to(self.collective_device, torch.float32) for t in tensors])
        dist.broadcast(flat, src=0)
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t).to(t.device, t.dtype))
            offset += n

    def gather(self, obj: Any) -> list[Any] | None:
        """Every process's ``obj`` on rank 0 (a list by rank), None elsewhere."""
        if not (self.active and self.world > 1):
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one (a stop asked of rank 0 stops all at the same step)."""
        if not (self.active and self.world > 1):
            return flag
        import torch

        t = torch.tensor([1.0 if flag else 0.0], device=self.collective_device)
        return bool(self.sum_(t).item() > 0)


def check_processes(device: str, n: int) -> None:
    """A ValueError saying why ``n`` processes cannot train on ``device`` here: more than the machine's GPUs
    (one each), or more CPU processes than cores. The job checks before it starts them, each started
    process (torchrun on any machine) again for its own machine."""
    if device.startswith("cuda"):
        import torch

        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n > have:
            raise ValueError(f"--nproc {n} asks for one GPU per process, but this worker has {have} GPU(s)")
    elif n > (os.cpu_count() or 1):
        raise ValueError(f"--nproc {n} CPU processes on a worker with {os.cpu_count()} cores would only contend; lower it")


def from_environment(device: str) -> Dist:
    """Join the process group torchrun's machinery described in the environment (one process and no group
    when it describes none). ``device``: the run's device; "cuda" becomes this process's own GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return Dist()
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local, active=True, backend=backend)


def rank_device(device: str, dist: Dist) -> str:
    """This process's device: one GPU per process by its local rank; the CPU stays the CPU."""
    if device.startswith("cuda") and dist.active:
        return f"cuda:{dist.local_rank}"
    return device


def shutdown(dist: Dist) -> None:
    if dist.active:
        import torch.distributed as tdist

        if tdist.is_initialized():
            tdist.destroy_process_group()
