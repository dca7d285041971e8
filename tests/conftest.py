import os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent            # the venv running pytest: its console scripts live here


def cat_nb_exe() -> str:
    exe = BIN/'cat-nb'
    assert exe.exists(), f"console script missing at {exe}: install the package (make setup)"
    return str(exe)
