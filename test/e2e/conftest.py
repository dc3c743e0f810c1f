import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "models"))

KILN = os.path.join(ROOT, "build", "bin", "kiln")
SHARED_MODELS = os.path.join(os.path.dirname(ROOT), "shared", "models")

# The CUDA target: its builds need nvcc; running them needs a GPU.
NVCC = shutil.which("nvcc") or next(
    (p for p in ["/usr/local/cuda/bin/nvcc"] if os.access(p, os.X_OK)), None)
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit) is not installed")


def gpu_present():
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    probe = subprocess.run([smi, "-L"], capture_output=True, text=True)
    return probe.returncode == 0 and "GPU" in probe.stdout


GPU = gpu_present()


@pytest.fixture(scope="session")
def kiln_bin():
    assert os.path.exists(KILN), "build kiln first (scripts/bootstrap.sh)"
    return KILN
