"""The devices a worker can run jobs on ("cpu", "cuda:0", ...), found at start without importing torch (the
names and the test of whether they serve a job's device are in jobs/devices.py).

Found cheaply because every worker start pays for it: ``nvidia-smi -L`` (or the driver's /proc listing)
counts the GPUs, CUDA_VISIBLE_DEVICES narrows them as torch would, and torch's own version file (read, not
imported: importing torch takes seconds) says whether the installed torch was built with CUDA at all.
VITPRO_WORKER_DEVICES overrides all of it for machines the detection gets wrong (ROCm, a container
without the driver tools).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from jobs.devices import normalise_list

OVERRIDE_ENV = "VITPRO_WORKER_DEVICES"


def detect_devices() -> list[str]:
    override = os.environ.get(OVERRIDE_ENV, "").strip()
    if override:
        return normalise_list(override)
    return ["cpu"] + [f"cuda:{i}" for i in range(_visible(_gpu_count()))] if _torch_has_cuda() else ["cpu"]


def _gpu_count() -> int:
    exe = shutil.which("nvidia-smi")
    if exe:
        try:
            out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0:
                return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            pass
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


def _visible(count: int) -> int:
    """How many of ``count`` GPUs this process sees: torch stops at the first invalid CUDA_VISIBLE_DEVICES entry."""
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return count
    seen = 0
    for entry in (e.strip() for e in spec.split(",")):
        if entry.startswith(("GPU-", "MIG-")) or (entry.isdigit() and int(entry) < count):
            seen += 1
        else:
            break
    return min(seen, count)


def _torch_has_cuda() -> bool:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    version = Path(list(spec.submodule_search_locations)[0]) / "version.py"
    try:
        text = version.read_text()
    except OSError:
        return False
    match = re.search(r"^cuda\s*(?::[^=]*)?=\s*(.+)$", text, re.MULTILINE)
    return bool(match) and match.group(1).strip() not in ("None", "''", '""')
