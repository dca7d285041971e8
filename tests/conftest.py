import os, sys
import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent            # the venv running pytest: its console scripts live here


def cat_nb_exe() -> str:
    exe = BIN/'cat-nb'
    assert exe.exists(), f"console script missing at {exe}: install the package (make setup)"
    return str(exe)


@pytest.fixture
def one_thread():
    "Single-threaded torch for a test: fast on the shared 2-core machine and one float order for bit-for-bit comparisons."
    import torch
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
