"OASIS source training: resume after a kill, DDP on CPU (gloo), bad input, the CLI."
import os, signal, socket, subprocess, sys, textwrap, time
from pathlib import Path
import pytest, torch
import torch.multiprocessing as mp
from cat_nb.core import RunDir
from cat_nb.train import train_config, train_source, load_source, OASISTrainer, train_source_cli
from cat_nb.losses import class_balance_weights


class RandomSeg(torch.utils.data.Dataset):
    "Tiny random dataset with the SegDataset item layout."
    def __init__(self, n, hw, n_ids, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.lab = torch.randint(0, n_ids, (n, *hw), generator=g)
        self.img = torch.rand(n, 3, *hw, generator=g) * 2 - 1
    def __len__(self): return len(self.lab)
    def __getitem__(self, i): return {'image': self.img[i], 'label': self.lab[i], 'name': str(i)}


pytestmark = pytest.mark.usefixtures('one_thread')      # conftest.py: single-threaded torch


def _cfg(**kw):
    base = dict(iters=6, batch_size=4, sample_every=3, ckpt_every=3, log_every=1, deterministic=True, n_samples=2)
    base.update(kw); return train_config('ade20k', 'quick', **base)


def _params(tr):
    return {f'{n}.{k}': v.detach().float().clone() for n, net in (('G', tr.G), ('D', tr.D), ('EMA', tr.EMA))
            for k, v in net.state_dict().items()}


def _assert_close(a, b, tol):
    assert a.keys() == b.keys()
    worst = max(((a[k] - b[k]).abs().max().item(), k) for k in a)
    assert worst[0] <= tol, worst


def test_resume_after_in_process_crash_matches_uninterrupted(tmp_path):
    ds = RandomSeg(8, (32, 32), 151)
    ref = train_source(ds, _cfg(), tmp_path/'a', progress=False)
    with pytest.raises(KeyboardInterrupt): train_source(ds, _cfg(), tmp_path/'b', progress=False, _crash_at=5)
    assert RunDir(tmp_path/'b').latest_checkpoint().name == 'step_00000003.pt'   # lost at most one interval
    res = train_source(ds, _cfg(), tmp_path/'b', progress=False)
    assert res.step_done == 6
    _assert_close(_params(ref), _params(res), 1e-5)
    steps = [r['step'] for r in RunDir(tmp_path/'b').metrics() if 'G' in r]
    assert steps[-1] == 6 and {r.get('event') for r in RunDir(tmp_path/'b').metrics()} >= {'start', 'resume'}


_KILL_SCRIPT = textwrap.dedent('''
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_train import RandomSeg, _cfg
    from cat_nb.train import train_source
    train_source(RandomSeg(8, (32, 32), 151), _cfg(iters=6), {out!r}, progress=False)
''')


def test_killed_subprocess_resumes_to_same_parameters(tmp_path):
    "SIGKILL a training process as soon as its first checkpoint lands, restart it, compare with an uninterrupted run."
    out = tmp_path/'killed'
    script = tmp_path/'run.py'; script.write_text(_KILL_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out)))
    p = subprocess.Popen([sys.executable, str(script)], env={**os.environ, 'OMP_NUM_THREADS': '1'})
    t0 = time.time()
    while not list((out/'checkpoints').glob('step_*.pt')) and p.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    done_before = RunDir(out).latest_checkpoint()
    assert done_before is not None and done_before.name != 'step_00000006.pt', 'the run finished before it could be killed'
    assert subprocess.run([sys.executable, str(script)], env={**os.environ, 'OMP_NUM_THREADS': '1'}).returncode == 0
    # the uninterrupted reference runs under the same thread count (float reduction order), in its own process
    ref_script = tmp_path/'ref.py'; ref_script.write_text(_KILL_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path/'ref')))
    assert subprocess.run([sys.executable, str(ref_script)], env={**os.environ, 'OMP_NUM_THREADS': '1'}).returncode == 0
    G, D, _ = load_source(out, 'cpu'); Gr, Dr, _ = load_source(tmp_path/'ref', 'cpu')
    for a, b in ((G, Gr), (D, Dr)):
        for k, v in b.state_dict().items(): assert torch.allclose(a.state_dict()[k].float(), v.float(), atol=1e-5), k


def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _grads(tr):
    return {f'{n}.{k}': p.grad.detach().clone() for n, net in (('G', tr.G), ('D', tr.D)) for k, p in net.named_parameters()}


def _steps(tr, ds, n):
    "Run n steps on this process's slices; return (grads after step 0, per-step losses)."
    from cat_nb.train import StepBatches, SeededItems
    items, losses, g0 = SeededItems(ds), [], None
    for s, idx in zip(range(n), StepBatches(len(ds), tr.cfg.batch_size, tr.rank, tr.world, tr.cfg.seed, 0, n)):
        batch = torch.utils.data.default_collate([items[i] for i in idx])
        losses.append(tr.step(batch, s))
        if s == 0: g0 = _grads(tr)
    return g0, losses


def _ddp_worker(rank, world, port, out, res):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist
    ds = RandomSeg(8, (32, 32), 151)
    tr = train_source(ds, _cfg(iters=4, ckpt_every=2, sample_every=2), out, 'cpu', progress=False)   # the full loop under torchrun-like env
    tr2 = OASISTrainer(_cfg(), 'cpu', rank, world)
    g0, losses = _steps(tr2, ds, 3)
    w = class_balance_weights(ds.lab[rank * 2:(rank + 1) * 2], 151)       # global counts under torch.distributed
    torch.save(dict(params=_params(tr), params2=_params(tr2), g0=g0, losses=losses, w=w), Path(res)/f'rank{rank}.pt')
    dist.destroy_process_group()


def test_ddp_two_gloo_processes_match_single_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path/'ddp'), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path/f'rank{r}.pt') for r in (0, 1))
    _assert_close(r0['params'], r1['params'], 0.0)                 # ranks hold identical parameters and buffers
    _assert_close(r0['params2'], r1['params2'], 0.0)
    assert len(list((tmp_path/'ddp'/'checkpoints').glob('*.pt'))) == 2 and (tmp_path/'ddp'/'samples').exists()
    ds = RandomSeg(8, (32, 32), 151)
    assert torch.allclose(r0['w'], class_balance_weights(ds.lab[:4], 151))   # class balancing of the global batch
    g0, losses = _steps(OASISTrainer(_cfg(), 'cpu'), ds, 3)        # one process, the same global batch of 4
    scale = {n: max(g.abs().max().item() for k, g in g0.items() if k[0] == n) for n in 'GD'}
    for k, g in g0.items():                                       # averaged gradients == single-process gradients
        assert torch.allclose(r0['g0'][k], g, rtol=1e-3, atol=1e-5 * scale[k[0]]), k
    for s, l in enumerate(losses):                                # mean of the ranks' losses == single-process loss
        for k, v in l.items():
            assert abs((r0['losses'][s][k] + r1['losses'][s][k]) / 2 - v) <= 1e-3 * max(1.0, abs(v)), (s, k)
    # after 3 Adam steps the weights agree to within a small fraction of the learning-rate scale (Adam turns
    # rounding-level gradient noise, e.g. on biases that BatchNorm cancels, into steps of up to lr)
    tr1 = OASISTrainer(_cfg(), 'cpu'); _steps(tr1, ds, 3); p1 = _params(tr1)
    diffs = torch.cat([(r0['params2'][k] - p1[k]).abs().flatten() for k in p1 if not k.endswith(('weight_u', 'weight_v'))])
    assert diffs.max() <= 3 * 4e-4 * 3 and diffs.median() <= 1e-6, (diffs.max(), diffs.median())


def test_bad_inputs(tmp_path):
    cfg = _cfg(iters=2)
    with pytest.raises(ValueError, match='size=32'): train_source(RandomSeg(4, (64, 64), 151), cfg, tmp_path/'a', progress=False)
    with pytest.raises(ValueError, match='CAT transfer'): train_source(RandomSeg(4, (32, 32), 183), cfg, tmp_path/'b', progress=False)
    with pytest.raises(ValueError, match='fewer than one global batch'): train_source(RandomSeg(3, (32, 32), 151), cfg, tmp_path/'c', progress=False)
    ds = RandomSeg(4, (32, 32), 151)
    tr = train_source(ds, cfg, tmp_path/'d', progress=False)
    with pytest.raises(ValueError, match='another config'): train_source(ds, train_config('cocostuff', 'quick', iters=2), tmp_path/'d', progress=False)
    # a run for other classes cannot be loaded as this model
    other = OASISTrainer(train_config('cocostuff', 'quick'), 'cpu')
    with pytest.raises(ValueError, match='CAT transfer'): OASISTrainer(cfg, 'cpu').load(other.state(), 'cocostuff run')
    # a corrupt newest checkpoint is reported, never silently replaced
    good = RunDir(tmp_path/'d').latest_checkpoint()
    (good.parent/'step_00000099.pt').write_bytes(b'truncated')
    with pytest.raises(RuntimeError, match='unreadable'): train_source(ds, cfg, tmp_path/'d', progress=False)
    (good.parent/'step_00000099.pt').unlink()
    # non-finite weights are never written over a good checkpoint
    before = good.read_bytes()
    with torch.no_grad(): next(tr.G.parameters()).fill_(float('nan'))
    with pytest.raises(FloatingPointError, match='previous checkpoint is kept'): tr.check_finite()
    assert good.read_bytes() == before


def test_train_source_cli_on_dataset_folder(tmp_path, capsys):
    pytest.importorskip('cat_nb.data')
    import numpy as np
    from cat_nb.data import write_pair
    rng = np.random.default_rng(0)
    for i in range(4):
        write_pair(tmp_path/'data', 'ade20k', 'train', f'ADE_train_{i+1:08d}', rng.integers(0, 255, (40, 40, 3), dtype=np.uint8),
                   rng.integers(0, 151, (40, 40)).astype(np.int64))
    args = ['--data', str(tmp_path/'data'), '--like', 'ade20k', '--preset', 'quick', '--out', str(tmp_path/'run'),
            '--iters', '2', '--batch-size', '2', '--no-progress']
    assert train_source_cli(args) == 0
    assert (tmp_path/'run'/'checkpoints'/'step_00000002.pt').exists() and list((tmp_path/'run'/'samples').glob('*.png'))
    assert train_source_cli(args[:-5] + ['--like', 'cocostuff'][:0] + args[-5:]) == 0            # rerun = resume, nothing to do
    assert 'already trained' in capsys.readouterr().out
    bad = ['--data', str(tmp_path/'data'), '--like', 'cityscapes', '--preset', 'quick', '--out', str(tmp_path/'run2'), '--iters', '1', '--batch-size', '2']
    assert train_source_cli(bad) == 1
