"""Shared pieces of the benchmark scripts: environment, the models they export, device timing."""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# glibc's allocator set as cnnviz sets it for itself (src/core/memory.cpp, KeepFreedMemory): freed blocks
# stay in the heap instead of being unmapped and page-faulted in again at the next batch or step. On the
# virtual machines we measure on a first touch costs ~12 us per 4 KiB page, so without this eager
# torchvision resnet18's forward pass at batch 16 spends about half its time in page faults (697 -> 349
# ms measured through cnnviz's Probe). Every process of a benchmark gets it, Python baselines included,
# so that a ratio measures the method and not the allocator. A script importing this module re-executes
# itself once with the setting (it must be in place before the interpreter starts); BENCH_MALLOC=default
# turns that off (to see what an unset environment costs).
MALLOC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"
if os.environ.get("BENCH_MALLOC") != "default" and os.environ.get("GLIBC_TUNABLES") != MALLOC_TUNABLES:
    os.environ["GLIBC_TUNABLES"] = MALLOC_TUNABLES
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable] + sys.argv)

# One intra-op thread and passive OpenMP waiting on both sides of every comparison (and the allocator
# setting above, inherited).
ENV = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1")


def ensure_resnet18(build):
    """Exports resnet18 (random weights, scripted, 224x224 sidecar) into BUILD/bench-data once."""
    data = os.path.join(build, "bench-data")
    os.makedirs(data, exist_ok=True)
    path = os.path.join(data, "resnet18.pt")
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(ROOT, "models", "export_torchvision.py"), "--arch", "resnet18",
                        "--script", "--out", path, "--input-size", "224"], check=True, env=ENV,
                       stdout=subprocess.DEVNULL)
    return path


def torch_device(name):
    """torch.device for a --device value; ValueError (a one-line error in the scripts) when CUDA is asked
    for but not available."""
    import torch
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch.cuda.is_available() is False")
    return torch.device(name)


def clock(device):
    """time.perf_counter() once the device's queued work has finished."""
    if device.type == "cuda":
        import torch
        torch.cuda.synchronize(device)
    return time.perf_counter()
