"""Guards of issue 18: no mixed datasets, refused report parameters, the pre-flight data scan, stale temporaries,
file permissions, Ctrl-C and usage errors, help texts and message order. Each test failed before its fix."""
import argparse, json, os, shlex, time
from pathlib import Path

import pytest
from conftest import ROOT

from cat_nb.cli import COMMANDS, main


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "A 4-pair SynthScenes-ADE20K set (train only) at size 32."
    from cat_nb.synth import write_synth
    return write_synth(tmp_path_factory.mktemp('guards')/'ade', 'ade20k', n_train=4, n_val=0, size=32, progress=False)


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in err, err
    return lines[0]


# 1 ---------------------------------------------------------------------------------------------------------------
def test_synth_never_mixes_datasets(tmp_path, capsys):
    "An existing set is replaced only with --overwrite, and then whole; other files and a file as --out: one-line errors, exit 2."
    out, args = tmp_path/'ds', ['synth', '--like', 'ade20k', '--size', '16', '--n-val', '0']
    assert main([*args, '--out', str(out), '--n-train', '6', '--seed', '0']) == 0
    capsys.readouterr()
    assert main([*args, '--out', str(out), '--n-train', '3', '--seed', '9']) == 2
    assert 'already holds a SynthScenes-ade20k set (seed 0, 6 train' in _one_line(capsys.readouterr().err)
    imgs = lambda: sorted(p.name for p in (out/'ADEChallengeData2016'/'images'/'training').iterdir())
    assert len(imgs()) == 6
    assert main([*args, '--out', str(out), '--n-train', '3', '--seed', '9', '--overwrite']) == 0
    capsys.readouterr()
    assert imgs() == [f'ADE_train_{i:08d}.jpg' for i in (1, 2, 3)]                  # none of the old seed's images 4-6
    assert json.loads((out/'concepts.json').read_text())['seed'] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ds']                      # no partial or old folder left
    (tmp_path/'mine').mkdir(); (tmp_path/'mine'/'notes.txt').write_text('keep')
    assert main([*args, '--out', str(tmp_path/'mine'), '--n-train', '1']) == 2
    assert 'not a SynthScenes set' in _one_line(capsys.readouterr().err) and (tmp_path/'mine'/'notes.txt').exists()
    (tmp_path/'f.txt').write_text('x')
    assert main([*args, '--out', str(tmp_path/'f.txt'), '--n-train', '1']) == 2
    assert 'is a file, not a folder' in _one_line(capsys.readouterr().err)


# 3 ---------------------------------------------------------------------------------------------------------------
def _toy_report(path, params="x: int = 1   # a parameter"):
    import nbformat as nbf
    nb = nbf.v4.new_notebook(metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')))
    nb.cells = [nbf.v4.new_markdown_cell('# Toy'),
                nbf.v4.new_code_cell(f"preset: str = 'quick'\nout_dir: str = 'out'\n{params}", metadata=dict(tags=['parameters'])),
                nbf.v4.new_code_cell('print(1)')]
    nbf.write(nb, str(path))


def test_reproduce_refuses_unknown_and_mistyped_params(tmp_path, capsys):
    "Refused before anything is built or written (the output folder is not even created), naming the reports' parameters."
    reps, out = tmp_path/'reports', tmp_path/'out'; reps.mkdir()
    _toy_report(reps/'a.ipynb'); _toy_report(reps/'b.ipynb', "seeds: list = None")
    def refused(*p):
        with pytest.raises(SystemExit) as e: main(['reproduce', '--reports', str(reps), '--out', str(out), *p])
        assert e.value.code == 2 and not out.exists()
        return capsys.readouterr().err
    err = refused('-p', 'bogus=1')
    assert "no selected report has a parameter 'bogus'; their parameters: a: x; b: seeds" in err, err
    assert "(only b, not selected, take it)" in refused('--only', 'a', '-p', 'seeds=[3]')
    assert 'report a expects int' in refused('-p', 'x=seven')
    t0 = time.time(); err = refused('-p', 'preset=nonsense')
    assert "-p preset='nonsense': choose from quick, standard, paper" in err and time.time() - t0 < 10


def test_reproduce_refuses_params_of_the_real_reports(tmp_path, capsys):
    "`-p seed=3` for reports whose parameter is `seeds`, and a bad direction, fail at once with the parameters named."
    reps = str(ROOT/'reports')
    with pytest.raises(SystemExit): main(['reproduce', '--reports', reps, '--out', str(tmp_path/'o'), '--only', 'table1', '-p', 'seed=3'])
    err = capsys.readouterr().err
    assert "no selected report has a parameter 'seed' (only source_models, not selected, take it)" in err and 'table1: directions' in err and 'seeds' in err
    t0 = time.time()
    with pytest.raises(SystemExit): main(['reproduce', '--reports', reps, '--out', str(tmp_path/'o'), '-p', "directions=['ade20k->mapillary']"])
    assert "unknown dataset 'mapillary'" in capsys.readouterr().err and time.time() - t0 < 30 and not (tmp_path/'o').exists()


# 4 ---------------------------------------------------------------------------------------------------------------
def _writing_report(path):
    "A toy report that writes `<out_dir>/<name>.md` with its parameter, and fails for x >= 5."
    import nbformat as nbf
    _toy_report(path)
    nb = nbf.read(str(path), as_version=4)
    nb.cells[-1].source = ("import pathlib\nd = pathlib.Path(out_dir); d.mkdir(parents=True, exist_ok=True)\n"
                           "(d/'partial.txt').write_text('half')\nassert x < 5, f'x={x} is too big'\n"
                           f"(d/'{path.stem}.md').write_text(f'# Toy\\nvalue {{x}}')")
    nbf.write(nb, str(path))


def test_failed_rerun_keeps_the_last_good_outputs(tmp_path, capsys):
    "A failed rerun leaves the good executed notebook and tables in place, its own execution apart in _failed/, SUMMARY says failed."
    from cat_nb.cli import _finished
    reps, out = tmp_path/'reports', tmp_path/'out'; reps.mkdir()
    _writing_report(reps/'a.ipynb')
    go = lambda *p: main(['reproduce', '--reports', str(reps), '--out', str(out), *p])
    assert go('-p', 'x=2') == 0 and (out/'a'/'a.md').read_text().endswith('value 2')
    capsys.readouterr()
    assert go('-p', 'x=7', '--force') == 1
    assert 'FAILED' in capsys.readouterr().err
    assert (out/'a'/'a.md').read_text().endswith('value 2') and _finished(out/'a.ipynb', dict(preset='quick', out_dir=str((out/'a').resolve()), x=2))
    assert (out/'_failed'/'a.ipynb').exists() and (out/'_failed'/'a'/'partial.txt').exists() and not (out/'.last_good').exists()
    s = (out/'SUMMARY.md').read_text()
    assert '[a](_failed/a.ipynb) | Toy | failed; last good outputs of an earlier call kept' in s and 'AssertionError: x=7 is too big' in s, s
    assert 'The last good outputs, from an earlier call' in s and 'value 2' in s, s
    # a call killed mid-rerun (its outputs half written, the good ones set aside): the next call puts the good ones back
    (out/'.last_good'/'a').mkdir(parents=True)
    for p in ('a.ipynb', 'a'): os.replace(out/p, out/'.last_good'/'a'/p)
    (out/'a').mkdir(); (out/'a'/'crashed.txt').write_text('half'); (out/'a.ipynb').write_text('{')
    _toy_report(reps/'b.ipynb')
    assert go('--only', 'b') == 0
    assert 'its last good outputs are back in place' in capsys.readouterr().err
    assert (out/'a'/'a.md').read_text().endswith('value 2') and not (out/'a'/'crashed.txt').exists() and not (out/'.last_good').exists()
    assert '[a](a.ipynb) | Toy | earlier call |' in (out/'SUMMARY.md').read_text()
    assert go('-p', 'x=3', '--force', '--only', 'a') == 0 and (out/'a'/'a.md').read_text().endswith('value 3')   # success replaces


# 5 ---------------------------------------------------------------------------------------------------------------
def test_check_data_reports_every_bad_file(tmp_path, capsys):
    "Truncated label, size mismatch, colour label map, missing partner: all listed in one run, exit status 1."
    import shutil
    from PIL import Image
    from cat_nb.synth import write_synth
    root = write_synth(tmp_path/'ade', 'ade20k', n_train=5, n_val=1, size=16, progress=False)
    imgs, lbls = root/'ADEChallengeData2016'/'images'/'training', root/'ADEChallengeData2016'/'annotations'/'training'
    assert main(['check-data', '--data', str(root), '--like', 'ade20k']) == 0
    assert 'ade20k train: 5 pairs read, 0 problem(s)' in capsys.readouterr().out
    l1, l2, l3 = (lbls/f'ADE_train_{i:08d}.png' for i in (1, 2, 3))
    l1.write_bytes(l1.read_bytes()[:-30])
    Image.new('L', (8, 16)).save(l2); Image.new('RGB', (16, 16)).save(l3)
    (lbls/'ADE_train_00000004.png').unlink()
    assert main(['check-data', '--data', str(root), '--like', 'ade20k', '--split', 'train']) == 1
    err = capsys.readouterr().err
    for what in (f'{l1}: truncated label map', f'its label map {l2} is 8x16', f'{l3}: label map has mode RGB', 'ADE_train_00000004.jpg: image has no label map'):
        assert what in err, (what, err)
    # train-source scans before it writes anything, and --no-check is the way around the scan
    out = tmp_path/'run'
    assert main(['train-source', '--data', str(root), '--like', 'ade20k', '--preset', 'quick', '--out', str(out), '--iters', '1']) == 1
    assert '4 problem(s)' in capsys.readouterr().err and not out.exists()


# 6 ---------------------------------------------------------------------------------------------------------------
def test_stale_temporaries_cleaned_and_data_checked_first(tmp_path, capsys):
    "A run starting or resuming removes the 0-byte .tmp a killed checkpoint write left; train_source opens its data before config.json."
    from cat_nb.core import RunDir
    from cat_nb.train import train_config, train_source
    run = tmp_path/'run'; (run/'checkpoints').mkdir(parents=True)
    (run/'checkpoints'/'step_00000002.pt').write_bytes(b'ok')
    stale = [run/'checkpoints'/'.step_00000004.pt.a1b2c3d4.tmp', run/'.config.json.zz9_yy8x.tmp']
    for p in stale: p.write_bytes(b'')
    RunDir(run)                                                          # a reader leaves them alone
    assert all(p.exists() for p in stale)
    RunDir(run, dict(lr=1))
    assert not any(p.exists() for p in stale) and (run/'checkpoints'/'step_00000002.pt').exists()
    assert 'removed 2 temporary file(s)' in capsys.readouterr().err
    with pytest.raises(ValueError, match='dataset folder not found'):
        train_source(tmp_path/'nodata', train_config('ade20k', 'quick'), tmp_path/'run2', progress=False)
    assert not (tmp_path/'run2').exists()


# 7 ---------------------------------------------------------------------------------------------------------------
def test_written_files_get_the_umask_permissions(tmp_path, umask022):
    "Atomic writes (configs, checkpoints, concepts.json) and the SynthScenes folder get 0644/0755 under umask 022, not mkstemp's 0600."
    from cat_nb.core import RunDir, atomic_write
    from cat_nb.synth import write_synth
    mode = lambda p: Path(p).stat().st_mode & 0o777
    assert mode(atomic_write(tmp_path/'a.txt', 'x')) == 0o644
    rd = RunDir(tmp_path/'run', dict(lr=1))
    assert mode(tmp_path/'run'/'config.json') == 0o644 and mode(rd.save_checkpoint({'step': 1}, 1)) == 0o644
    root = write_synth(tmp_path/'ds', 'cocostuff', n_train=1, n_val=0, size=16, progress=False)
    assert mode(root) == 0o755 and mode(root/'concepts.json') == 0o644
    os.umask(0o077)
    assert mode(atomic_write(tmp_path/'b.txt', 'x')) == 0o600


# 8 ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('cmd', ['train-source', 'transfer'])
def test_ctrl_c_names_checkpoint_and_resume_command(cmd, tiny, tmp_path, capsys, monkeypatch):
    "KeyboardInterrupt mid-run: exit 130, one stderr line with the last checkpoint and the exact resuming command, no traceback."
    import cat_nb.train, cat_nb.transfer_cli
    out = tmp_path/'run with space'
    def killed(*a, **k):
        (out/'checkpoints').mkdir(parents=True); (out/'checkpoints'/'step_00000004.pt').write_bytes(b'')
        raise KeyboardInterrupt
    monkeypatch.setattr(cat_nb.train, 'train_source', killed); monkeypatch.setattr(cat_nb.transfer_cli, 'transfer', killed)
    args = (['--data', str(tiny), '--like', 'ade20k', '--preset', 'quick'] if cmd == 'train-source' else
            ['--target-data', str(tiny), '--like', 'ade20k', '--method', 'scratch', '--preset', 'quick']) + ['--out', str(out), '--no-progress']
    try: rc = main([cmd, *args])
    except KeyboardInterrupt: pytest.fail('KeyboardInterrupt escaped the command (a traceback for the user)')
    assert rc == 130
    line = _one_line(capsys.readouterr().err)
    assert f"last checkpoint {out/'checkpoints'/'step_00000004.pt'}" in line and line.endswith(shlex.join(['cat-nb', cmd, *args])), line


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith('usage: cat-nb COMMAND') and 'train-source' in err
    assert main(['--help']) == 0 and 'usage: cat-nb COMMAND' in capsys.readouterr().out


# 9 ---------------------------------------------------------------------------------------------------------------
def test_evaluate_without_checkpoint_says_so(tmp_path, capsys):
    from cat_nb.evaluation import evaluate_cli
    (tmp_path/'run').mkdir(); (tmp_path/'run'/'config.json').write_text('{"model": {}}')
    with pytest.raises(SystemExit): evaluate_cli(['--run', str(tmp_path/'run'), '--metrics', 'fid'])
    err = capsys.readouterr().err
    assert 'holds no checkpoint' in err and '--data is required' not in err, err
    with pytest.raises(SystemExit): evaluate_cli(['--help'])
    h = ' '.join(capsys.readouterr().out.split())
    assert '`cat-nb train-source`' in h and '`cat-nb train`' not in h


class _Parser(Exception): pass

@pytest.mark.parametrize('name', list(COMMANDS))
def test_every_flag_has_help_and_shows_its_default(name, monkeypatch):
    import importlib
    def grab(self, *a, **k): raise _Parser(self)
    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', grab)
    mod, fn = COMMANDS[name][0].split(':')
    with pytest.raises(_Parser) as e: getattr(importlib.import_module(mod), fn)([])
    p = e.value.args[0]; fmt = p._get_formatter()
    for act in p._actions:
        if isinstance(act, argparse._HelpAction): continue
        assert act.help, (name, act.option_strings, 'no help text')
        boolean = isinstance(act, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if act.option_strings and not act.required and not boolean:
            assert 'default' in fmt._get_help_string(act).lower(), (name, act.option_strings, act.help)


def test_train_source_says_it_uses_the_standard_preset(tiny, tmp_path, capsys, monkeypatch):
    import cat_nb.train
    class Done: step_done = 0
    monkeypatch.setattr(cat_nb.train, 'train_source', lambda *a, **k: Done())
    assert main(['train-source', '--data', str(tiny), '--like', 'ade20k', '--out', str(tmp_path/'r'), '--no-progress']) == 0
    assert 'OASIS ade20k at preset standard (the default; --preset quick|standard|paper)' in capsys.readouterr().out
    assert main(['train-source', '--data', str(tiny), '--like', 'ade20k', '--out', str(tmp_path/'r'), '--preset', 'quick']) == 0
    out = capsys.readouterr().out
    assert 'at preset quick,' in out and 'the default' not in out


def test_affinity_messages_print_source_first(tmp_path):
    "One order everywhere, as 'source->target' and the README: 'ade20k 151 -> cocostuff 183' for an ADE20K source."
    import numpy as np
    from cat_nb.affinity import random_affinity
    from cat_nb.transfer import resolve_affinity
    assert 'ade20k 151 -> cocostuff 183' in repr(random_affinity('cocostuff', 'ade20k'))    # target cocostuff, source ade20k
    np.save(tmp_path/'a.npy', np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match=r'ade20k -> cocostuff needs \(C_T, C_S\) = \(183, 151\)'):
        resolve_affinity('cocostuff', 'ade20k', path=tmp_path/'a.npy')
