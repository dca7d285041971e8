"""The `cat-nb` console script as a user calls it."""
import json, subprocess
from conftest import cat_nb_exe


def run(*args, check=True):
    r = subprocess.run([cat_nb_exe(), *args], capture_output=True, text=True, timeout=600)
    if check: assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_help_lists_commands():
    from cat_nb.cli import COMMANDS
    out = run('--help').stdout
    for name in COMMANDS: assert name in out


def test_every_command_has_help():
    from cat_nb.cli import COMMANDS
    for name in COMMANDS:
        r = run(name, '--help')
        assert 'usage: cat-nb ' + name in r.stdout, (name, r.stdout[:500])


def test_unknown_command_fails_clearly():
    r = run('no-such-command', check=False)
    assert r.returncode == 2 and 'unknown command' in r.stderr


def test_info_reports_device_paths_and_weights():
    import torch
    r = run('info', '--json')
    rep = json.loads(r.stdout)
    assert rep['cuda'] == torch.cuda.is_available()
    assert rep['device'].startswith('cuda' if torch.cuda.is_available() else 'cpu')
    assert torch.__version__.startswith(rep['packages']['torch'])
    assert {'data', 'weights', 'runs', 'torch_hub'} <= set(rep['paths'])
    assert all({'name', 'file', 'present'} <= set(w) for w in rep['weights'])
    text = run('info').stdout
    assert 'pretrained weights:' in text and 'device:' in text


def test_reproduce_rejects_unknown_report(tmp_path):
    (tmp_path/'a.ipynb').write_text('{}')
    r = run('reproduce', '--reports', str(tmp_path), '--only', 'zzz', check=False)
    assert r.returncode != 0 and 'unknown report' in r.stderr
