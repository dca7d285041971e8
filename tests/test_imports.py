"""Every cat_nb module imports on its own, in a fresh interpreter.

nbdev_test runs each notebook top to bottom, so a name that only exists as a notebook global (never exported)
passes there and fails for users of the package. Importing each module alone catches that."""
import pkgutil, subprocess, sys
import pytest
import cat_nb

MODULES = sorted(m.name for m in pkgutil.walk_packages(cat_nb.__path__, 'cat_nb.'))


def test_modules_found():
    assert {'cat_nb.core', 'cat_nb.cli', 'cat_nb._modidx'} <= set(MODULES)


@pytest.mark.parametrize('mod', MODULES)
def test_module_imports_alone(mod):
    r = subprocess.run([sys.executable, '-c', f'import {mod}'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f'import {mod} failed:\n{r.stderr[-3000:]}'


def test_modidx_lists_every_module():
    # _modidx is nbdev's symbol index; a module missing from it was not exported from a notebook
    from cat_nb._modidx import d
    exported = {k for k in d['syms']}
    assert {m for m in MODULES if m != 'cat_nb._modidx'} <= exported, set(MODULES) - exported
