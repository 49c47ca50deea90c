"""torchrun's launcher (``torch.distributed.run``) in a process that dies with the one that started it.

Linux's parent-death signal is set here, in the child itself (and again by each training process for
torchrun's agent, which starts them in sessions of their own: trainer/ranks.py) (setting it between fork and exec would
need ``preexec_fn``, which is unsafe in a threaded parent such as a worker with its heartbeat). If the
parent is already gone when this runs, the launcher never starts.

    python -m trainer.agent [torchrun options] -m trainer.ranks run.json
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when its parent ends; exit now if ``parent`` has already
    gone (this process was handed to init before the signal was set)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig))
    except (OSError, AttributeError):  # not Linux: the parent's kill of its process group still reaches us
        pass
    if parent and os.getppid() != parent:
        sys.exit("the process that started this training process is gone; not starting")


def main() -> None:
    die_with_parent(int(os.environ.get("VITPRO_TRAIN_PARENT", "0")))
    from torch.distributed.run import main as torchrun

    torchrun(sys.argv[1:])


if __name__ == "__main__":
    main()
