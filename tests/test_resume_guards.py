"""Resume guards of issue 18, items 2 and 10: a run refuses to resume on other data, another subset or another source model
(fingerprints in provenance.json, apart from config.json and every config hash), a run from before that record still
resumes, `--extend` trains a finished run on to a larger --iters and records it, and `transfer --ckpt-every`. Each test
failed before its fix."""
import hashlib, json
from pathlib import Path

import pytest
import torch

from cat_nb.cli import main
from cat_nb.core import RunDir, to_jsonable
from cat_nb.train import train_config, train_source


pytestmark = pytest.mark.usefixtures('one_thread')      # conftest.py: single-threaded torch


@pytest.fixture(scope='module')
def sets(tmp_path_factory):
    "Two 6-pair SynthScenes-ADE20K sets (seeds 0 and 1, same image names), a 2-iteration source model and a perturbed copy of it."
    from cat_nb.synth import write_synth
    d = tmp_path_factory.mktemp('resume_guards')
    for s in (0, 1): write_synth(d/f'ade{s}', 'ade20k', n_train=6, n_val=2, size=32, seed=s, progress=False)
    train_source(d/'ade0', train_config('ade20k', 'quick', iters=2, ckpt_every=2, sample_every=2), d/'src', 'cpu', progress=False)
    st = RunDir(d/'src').load_latest()
    with torch.no_grad(): next(iter(st['EMA'].values())).add_(1.0)
    torch.save(st, d/'src_other.pt')                                    # same architecture, other weights
    names = sorted(p.stem for p in (d/'ade0'/'ADEChallengeData2016'/'images'/'training').iterdir())
    (d/'sub4.txt').write_text('\n'.join(names[:4]) + '\n'); (d/'sub3.txt').write_text('\n'.join(names[1:4]) + '\n')
    return d


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'Traceback' not in err, err
    return err


def _train(d, out, *extra, data='ade0'):
    return ['train-source', '--data', str(d/data), '--like', 'ade20k', '--preset', 'quick', '--out', str(out), '--batch-size', '2',
            '--no-progress', '--device', 'cpu', *extra]


def _transfer(d, out, *extra, data='ade0', subset='sub4.txt', source='src'):
    return ['transfer', '--source', str(d/source), '--target-data', str(d/data), '--like', 'ade20k', '--subset', str(d/subset),
            '--method', 'transfergan', '--out', str(out), '--no-progress', '--device', 'cpu', *extra]


# 2 ---------------------------------------------------------------------------------------------------------------
def test_train_source_refuses_other_data(sets, tmp_path, capsys):
    "The same command on another dataset folder: exit 1, one line naming the data (recorded vs now) and the way out; nothing written."
    out = tmp_path/'run'
    assert main(_train(sets, out, '--iters', '2')) == 0
    rec = json.loads((out/'provenance.json').read_text())
    assert rec['inputs']['data']['n'] == 6 and rec['where']['data'] == str((sets/'ade0').resolve())
    assert json.loads((out/'config.json').read_text()) == to_jsonable(train_config('ade20k', 'quick', iters=2, batch_size=2))   # as before
    capsys.readouterr()
    metrics = (out/'metrics.jsonl').read_text()
    assert main(_train(sets, out, '--iters', '2', data='ade1')) == 1
    err = _err(capsys)
    assert 'was started with other inputs: data differs (files_sha ' in err and 'recorded vs now' in err, err
    assert 'Resume with the original data, or pass a new --out' in err, err
    assert (out/'metrics.jsonl').read_text() == metrics
    assert main(_train(sets, out, '--iters', '2')) == 0         # the original data resumes (nothing left to do)


def test_transfer_refuses_other_subset_data_or_source(sets, tmp_path, capsys):
    "A changed subset, another target folder, another source checkpoint: each refused by name; run.json keeps n_train 4."
    out = tmp_path/'run'
    assert main(_transfer(sets, out, '--iters', '2')) == 0
    inputs = json.loads((out/'provenance.json').read_text())['inputs']
    assert set(inputs) == {'data', 'subset', 'source'} and inputs['subset']['n'] == 4
    assert inputs['source']['sha256'] == hashlib.sha256(RunDir(sets/'src').latest_checkpoint().read_bytes()).hexdigest()
    capsys.readouterr()
    for args, what in ((_transfer(sets, out, '--iters', '2', subset='sub3.txt'), 'subset differs (n 4 vs 3, names_sha '),
                       (_transfer(sets, out, '--iters', '2', data='ade1'), 'data differs (files_sha '),
                       (_transfer(sets, out, '--iters', '2', source='src_other.pt'), 'source differs (sha256 ')):
        assert main(args) == 1, what
        err = _err(capsys)
        assert what in err and 'recorded vs now' in err and 'or pass a new --out' in err, (what, err)
        assert json.loads((out/'run.json').read_text())['n_train'] == 4                       # run.json still tells the truth
    assert main(_transfer(sets, out, '--iters', '2')) == 0
    assert 'already trained' in capsys.readouterr().out


def test_run_without_fingerprints_still_resumes(sets, tmp_path, capsys):
    "A run made before provenance.json (killed at step 1) resumes with one warning; its inputs are recorded from then on."
    cfg, out = train_config('ade20k', 'quick', iters=2, ckpt_every=1, batch_size=2), tmp_path/'old'
    with pytest.raises(KeyboardInterrupt): train_source(sets/'ade0', cfg, out, 'cpu', progress=False, _crash_at=1)
    (out/'provenance.json').unlink()                                   # what a run of the previous revision looks like
    capsys.readouterr()
    assert train_source(sets/'ade0', cfg, out, 'cpu', progress=False).step_done == 2
    err = capsys.readouterr().err
    assert err.count('cannot be checked') == 1 and 'recording the current ones' in err, err
    rec = json.loads((out/'provenance.json').read_text())
    assert rec['recorded']['step'] == 1 and 'unverified' in rec['recorded']['note'] and rec['inputs']['data']['n'] == 6
    train_source(sets/'ade0', cfg, out, 'cpu', progress=False)
    assert 'cannot be checked' not in capsys.readouterr().err           # warned once
    with pytest.raises(ValueError, match='data differs'): train_source(sets/'ade1', cfg, out, 'cpu', progress=False)


# 10 --------------------------------------------------------------------------------------------------------------
def test_train_source_extend(sets, tmp_path, capsys):
    "A larger --iters is refused with a message naming --extend; with --extend the run goes on to 4 and records the extension."
    out = tmp_path/'run'
    assert main(_train(sets, out, '--iters', '2')) == 0
    capsys.readouterr()
    assert main(_train(sets, out, '--iters', '4')) == 1
    err = _err(capsys)
    assert "'iters': (2, 4)" in err and 'to train it on from 2 to 4 iterations, pass --extend' in err, err
    with pytest.raises(SystemExit) as e: main(_train(sets, out, '--extend'))
    assert e.value.code == 2 and '--extend needs --iters' in capsys.readouterr().err
    assert main(_train(sets, out, '--iters', '4', '--extend', data='ade1')) == 1              # other data: refused before extending
    assert 'data differs' in _err(capsys) and RunDir(out).config['iters'] == 2 and 'extended' not in RunDir(out).provenance()
    assert main(_train(sets, out, '--iters', '4', '--extend')) == 0
    assert 'extended from 2 to 4 iterations' in capsys.readouterr().out
    run = RunDir(out)
    assert run.latest_checkpoint().name == 'step_00000004.pt' and run.load_latest()['step'] == 4 and run.config['iters'] == 4
    ext = run.provenance()['extended']
    assert [(x['from'], x['to'], x['step']) for x in ext] == [(2, 4, 2)] and 'commit' in ext[0] and 'time' in ext[0]
    events = [(m['step'], m['event']) for m in run.metrics() if 'event' in m]
    assert events == [(0, 'start'), (2, 'end'), (2, 'extended'), (2, 'resume'), (4, 'end')], events
    assert max(m['step'] for m in run.metrics() if 'G' in m) == 4
    assert main(_train(sets, out, '--iters', '4', '--extend')) == 0        # the same command again: nothing more to do
    assert len(RunDir(out).provenance()['extended']) == 1
    capsys.readouterr()
    assert main(_train(sets, out, '--iters', '3', '--extend')) == 1
    assert '--extend only raises the iterations' in _err(capsys)


def test_transfer_extend(sets, tmp_path, capsys):
    "transfer: refused without --extend (naming it), extended from 2 to 3 with it; the history is in provenance.json and metrics.jsonl."
    out = tmp_path/'run'
    assert main(_transfer(sets, out, '--iters', '2')) == 0
    capsys.readouterr()
    assert main(_transfer(sets, out, '--iters', '3')) == 1
    err = _err(capsys)
    assert "'train.iters': (2, 3)" in err and 'from 2 to 3 iterations, pass --extend' in err, err
    assert main(_transfer(sets, out, '--iters', '3', '--extend')) == 0
    run = RunDir(out)
    assert run.load_latest()['step'] == 3 and run.config['train']['iters'] == 3
    assert [(x['from'], x['to'], x['step']) for x in run.provenance()['extended']] == [(2, 3, 2)]
    events = [(m['step'], m['event']) for m in run.metrics() if 'event' in m]
    assert events == [(0, 'start'), (2, 'end'), (2, 'extended'), (2, 'resume'), (3, 'end')], events


def test_transfer_ckpt_every(sets, tmp_path, capsys):
    "`transfer --ckpt-every N` reaches the config and the checkpoints; its help names the preset defaults."
    out = tmp_path/'run'
    assert main(_transfer(sets, out, '--iters', '3', '--ckpt-every', '1')) == 0
    assert RunDir(out).config['train']['ckpt_every'] == 1
    assert sorted(p.name for p in (out/'checkpoints').glob('*.pt')) == ['step_00000002.pt', 'step_00000003.pt']   # keep 2 of 1, 2, 3
    with pytest.raises(SystemExit): main(['transfer', '--help'])
    h = ' '.join(capsys.readouterr().out.split())
    assert '--ckpt-every CKPT_EVERY checkpoint every N iterations (default: the preset\'s: quick 6, standard 100, paper 2000)' in h, h
    assert '--extend' in h


# 11 (issue 18: see what you have) ---------------------------------------------------------------------------------
def test_runs_lists_and_show_shows(sets, tmp_path, capsys):
    "`cat-nb runs DIR --json` finds a finished source run and a stopped transfer run with their progress; `cat-nb show` one of them."
    assert main(_train(sets, tmp_path/'a'/'src', '--iters', '2')) == 0
    t = tmp_path/'b'/'t'
    assert main(_transfer(sets, t, '--iters', '3', '--ckpt-every', '1')) == 0
    (t/'checkpoints'/'step_00000003.pt').unlink()                       # as if killed before its last checkpoint
    capsys.readouterr()
    assert main(['runs', str(tmp_path), '--json']) == 0
    rows = {r['name']: r for r in json.loads(capsys.readouterr().out)}
    assert {k: rows['src'][k] for k in ('kind', 'data', 'method', 'step', 'iters', 'status')} == \
        dict(kind='source', data='ade20k', method='oasis', step=2, iters=2, status='finished'), rows['src']
    assert {k: rows['t'][k] for k in ('kind', 'data', 'step', 'iters', 'status')} == \
        dict(kind='transfer', data='ade20k->ade20k', step=2, iters=3, status='resumable'), rows['t']
    assert rows['t']['method'].startswith('transfergan') and 'G' in rows['t']['metrics']
    assert main(['runs', str(tmp_path), '--kind', 'transfer']) == 0
    out = capsys.readouterr().out
    assert '2/3' in out and 'resumable' in out and '/src' not in out, out
    assert main(['show', str(t), '--json']) == 0
    s = json.loads(capsys.readouterr().out)
    assert s['config']['train']['iters'] == 3 and [m['event'] for m in s['history'] if 'event' in m] == ['start', 'end']
    assert s['newest_samples'].endswith('.png') and Path(s['newest_samples']).exists()
    assert main(['show', str(tmp_path)]) == 2 and 'is not a run folder' in capsys.readouterr().err
