"""Shared pieces of the benchmark scripts: environment, the models they export, device timing."""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One intra-op thread and passive OpenMP waiting on both sides of every comparison.
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
