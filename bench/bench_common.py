"""Shared pieces of the benchmark scripts: environment and the models they export."""
import os
import subprocess
import sys

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
