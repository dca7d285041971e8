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


def _toy_report(path, title):
    import nbformat as nbf
    nb = nbf.v4.new_notebook(metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')))
    nb.cells = [nbf.v4.new_markdown_cell(f'# {title}'),
                nbf.v4.new_code_cell("preset: str = 'quick'   # preset\nout_dir: str = 'out'   # output folder\nx: int = 1   # a parameter",
                                     metadata=dict(tags=['parameters'])),
                nbf.v4.new_code_cell('print(x)')]
    nbf.write(nb, str(path))


def test_reproduce_summary_keeps_reports_of_earlier_calls(tmp_path):
    "Two `--only` calls into one folder: SUMMARY.md lists both reports, the first as an earlier call with its parameters."
    reps, out = tmp_path/'reports', tmp_path/'out'
    reps.mkdir()
    _toy_report(reps/'a.ipynb', 'Toy A'); _toy_report(reps/'b.ipynb', 'Toy B')
    run('reproduce', '--reports', str(reps), '--out', str(out), '--only', 'a', '-p', 'x=7')
    r = run('reproduce', '--reports', str(reps), '--out', str(out), '--only', 'b')
    assert 'done: 1 of 1 report(s)' in r.stdout, r.stdout
    s = (out/'SUMMARY.md').read_text()
    assert '[a](a.ipynb) | Toy A | earlier call | `x=7` |' in s and '[b](b.ipynb) | Toy B | ran | the plan |' in s, s
    assert '2 of 2 reports done (1 by earlier calls' in s and s.index('[a](a.ipynb)') < s.index('[b](b.ipynb)')
    _toy_report(reps/'a.ipynb', 'Toy A, edited')
    run('reproduce', '--reports', str(reps), '--out', str(out), '--only', 'b')
    s = (out/'SUMMARY.md').read_text()
    assert 'earlier call, report edited since' in s and '| b](b.ipynb)' not in s and '| cached |' in s, s


def test_adopt_source_errors(tmp_path):
    "`cat-nb adopt-source`: paper needs the data root the reports will read; a missing model is a one-line error, not a traceback."
    r = run('adopt-source', '--like', 'ade20k', '--from', str(tmp_path/'none'), check=False)
    assert r.returncode == 2 and '--preset paper needs --data' in r.stderr, r.stderr
    (tmp_path/'models').mkdir(); (tmp_path/'models'/'latest_G.pth').write_bytes(b'')
    r = run('adopt-source', '--like', 'ade20k', '--data', str(tmp_path), '--from', str(tmp_path/'models'), check=False)
    assert r.returncode == 1 and 'latest_D.pth, latest_EMA.pth missing' in r.stderr and 'Traceback' not in r.stderr, r.stderr


def test_reproduce_retrain_sources_reaches_the_reports(tmp_path):
    "`--retrain-sources` sets CAT_NB_SOURCES=train for the report kernels (and the prebuild workers); without it they see the default."
    import nbformat as nbf
    reps = tmp_path/'reports'; reps.mkdir()
    _toy_report(reps/'a.ipynb', 'Toy A')
    nb = nbf.read(str(reps/'a.ipynb'), as_version=4)
    nb.cells[-1].source = "import os, pathlib\npathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)\n" \
                          "(pathlib.Path(out_dir)/'sources.txt').write_text(os.environ.get('CAT_NB_SOURCES', 'unset'))"
    nbf.write(nb, str(reps/'a.ipynb'))
    for flag, want in (([], 'unset'), (['--retrain-sources', '--force'], 'train')):
        run('reproduce', '--reports', str(reps), '--out', str(tmp_path/'out'), *flag)
        assert (tmp_path/'out'/'a'/'sources.txt').read_text() == want


def test_reproduce_estimate_times_this_machine_and_builds_nothing(tmp_path):
    "`--estimate` prints the selected reports' runs and hours from a step timed here, and writes no report."
    from pathlib import Path
    from cat_nb.budget import estimate_plan
    from cat_nb.reports import plan
    reps = Path(__file__).resolve().parents[1]/'reports'
    out = tmp_path/'out'
    r = run('reproduce', '--preset', 'standard', '--estimate', '--only', 'table4', '--backbone', 'oasis', '--reports', str(reps), '--out', str(out))
    n = estimate_plan('standard', reports=['table4'], plans={'table4': plan('table4', 'standard')})['finetuned_runs']
    assert f'OASIS: {n} finetuned and 0 training-free runs' in r.stdout, r.stdout
    assert 's per transfer iteration alone' in r.stdout and 'PITI' not in r.stdout.split('\n', 2)[-1], r.stdout
    assert not list(out.glob('*.ipynb')) and not (out/'SUMMARY.md').exists()
    t5 = run('reproduce', '--preset', 'standard', '--estimate', '--only', 'table5', '--reports', str(reps), '--out', str(out))
    assert 'PITI:' in t5.stdout and 'timing the standard CAT' not in t5.stdout and 'OASIS' not in t5.stdout, t5.stdout   # PITI only: no OASIS step timed
    q = run('reproduce', '--estimate', '--only', 'table4', '--reports', str(reps), '--out', str(out), check=False)
    assert q.returncode == 2 and 'measured at --preset standard' in q.stderr
