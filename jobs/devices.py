"""Device names ("cpu", "cuda:0", ...) and the test of whether a worker's devices serve the device a job
asks for. Pure: the launch check uses them on the sending side, the workers when they record their devices."""
from __future__ import annotations

import re


def normalise_list(text: str) -> list[str]:
    devices = [normalise(d) for d in text.split(",") if d.strip()]
    return list(dict.fromkeys(["cpu", *devices]))  # every worker can run on its CPU


def normalise(device: str) -> str:
    device = device.strip().lower()
    return "cuda:0" if device == "cuda:" else device


def serves(devices: list[str], wanted: str) -> bool:
    """Whether a worker with ``devices`` can run a job on ``wanted``: "cuda" is any GPU, "cuda:1" that one."""
    wanted = normalise(wanted)
    if wanted == "cpu" or wanted in devices:
        return True
    return ":" not in wanted and any(d.split(":", 1)[0] == wanted for d in devices)


def is_accelerator(device: str) -> bool:
    """A device name the launch check knows how to look for (others are left to the engines)."""
    return re.fullmatch(r"(cuda|mps|xpu)(:\d+)?", normalise(device)) is not None
