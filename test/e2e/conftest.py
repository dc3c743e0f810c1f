import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "models"))

KILN = os.path.join(ROOT, "build", "bin", "kiln")
SHARED_MODELS = os.path.join(os.path.dirname(ROOT), "shared", "models")


@pytest.fixture(scope="session")
def kiln_bin():
    assert os.path.exists(KILN), "build kiln first (scripts/bootstrap.sh)"
    return KILN
