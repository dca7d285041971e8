"""Tests of cat_nb.transfer: CAT architecture, parameter selection per method/stage, FreezeD, regularizers (both sides), resume,
every method end to end, run.json, mIoU evaluation, DDP with torchrun (gloo)."""
import dataclasses, json, os, subprocess, sys, textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from cat_nb.oasis import oasis_config, OASISGenerator, OASISDiscriminator
from cat_nb.transfer import (CATGenerator, load_source_into, target_discriminator, freeze_d, METHODS, g_group, set_trainable,
                             transfer_config, TransferTrainer, transfer, load_transfer, training_free_generator,
                             resolve_affinity, read_run_info, TRANSFER_PRESETS)
from cat_nb.transfer_cli import transfer_cli
from cat_nb.train import OASISTrainer
from cat_nb.core import RunDir

SRC = oasis_config('ade20k', 'quick')


def _source(seed=0, scale=0.2):
    torch.manual_seed(seed)
    G, D = OASISGenerator(SRC), OASISDiscriminator(SRC)
    for p in G.parameters(): p.data.normal_(0, scale)
    return dict(G=G.state_dict(), EMA=G.state_dict(), D=D.state_dict(), model=dataclasses.asdict(SRC))


def _batch(cfg, n=2, seed=0):
    g = torch.Generator().manual_seed(seed); h, w = cfg.train.model.image_hw
    return dict(image=torch.rand(n, 3, h, w, generator=g) * 2 - 1,
                label=torch.randint(0, cfg.train.model.semantic_nc, (n, h, w), generator=g))


def test_identity_affinity_reproduces_source_exactly():
    src = _source()
    G0 = OASISGenerator(SRC); G0.load_state_dict(src['G']); G0.eval()
    for residual in (True, False):
        G = load_source_into(CATGenerator(SRC, SRC.semantic_nc, np.eye(SRC.semantic_nc), residual=residual), src['G']).eval()
        lab = torch.randint(0, SRC.semantic_nc, (3, *SRC.image_hw)); z = torch.randn(3, SRC.z_dim)
        with torch.no_grad(): assert torch.equal(G(lab, z), G0(lab, z))


def test_permuted_affinity_relabels():
    "A permutation affinity makes target id k behave exactly like source id perm[k]."
    src = _source(1)
    G0 = OASISGenerator(SRC); G0.load_state_dict(src['G']); G0.eval()
    perm = torch.randperm(SRC.semantic_nc, generator=torch.Generator().manual_seed(0))
    A = np.eye(SRC.semantic_nc, dtype=np.float32)[perm.numpy()]
    G = load_source_into(CATGenerator(SRC, SRC.semantic_nc, A), src['G']).eval()
    lab = torch.randint(0, SRC.semantic_nc, (2, *SRC.image_hw)); z = torch.randn(2, SRC.z_dim)
    with torch.no_grad(): torch.testing.assert_close(G(lab, z), G0(perm[lab], z), atol=1e-6, rtol=0)


def test_residual_branches_zero_init_and_effective():
    G = CATGenerator(SRC, 35, np.full((35, 151), 1 / 151, np.float32)).eval()
    res = [(n, p) for n, p in G.named_parameters() if g_group(n) == 'residual']
    assert res and all((p == 0).all() for _, p in res)
    lab = torch.randint(0, 35, (1, *SRC.image_hw)); z = torch.randn(1, SRC.z_dim)
    with torch.no_grad():
        a = G(lab, z)
        G.body[0].norm_0.res_gamma.bias.fill_(1.0)
        assert not torch.allclose(a, G(lab, z))          # the branches are wired into the scale path


@pytest.mark.parametrize('residual', [True, False])
def test_lookup_path_matches_dense_path(residual):
    "Integer ids go through CATCond look-ups (A folded into the first-conv weights); one-hot maps through the dense path: same result."
    import copy
    from cat_nb.oasis import one_hot
    from cat_nb.transfer import CATCond
    A = torch.rand(35, 151, generator=torch.Generator().manual_seed(1)); A = (A / A.sum(1, keepdim=True)).numpy()
    G = load_source_into(CATGenerator(SRC, 35, A, residual=residual), _source(scale=0.05)['G']).train()
    for n, p in G.named_parameters():
        if 'res_' in n: p.data.normal_(0, 0.1)
    G2 = copy.deepcopy(G)                                        # same spectral-norm state for both forwards
    lab, z = torch.randint(0, 35, (3, *SRC.image_hw)), torch.randn(3, SRC.z_dim)
    assert isinstance(G.condition(lab, z, dense=False), CATCond)
    y1, y2 = G(lab, z), G2(one_hot(lab, 35), z)
    torch.testing.assert_close(y1, y2, atol=1e-4, rtol=0)
    g1 = torch.autograd.grad(y1.square().sum(), G.cond_transform.weight)[0]
    g2 = torch.autograd.grad(y2.square().sum(), G2.cond_transform.weight)[0]
    assert g2.abs().max() > 0
    torch.testing.assert_close(g1, g2, atol=1e-4 * g2.abs().max().item(), rtol=0)


def test_no_residual_has_no_branch_params():
    G = CATGenerator(SRC, 35, np.full((35, 151), 1 / 151, np.float32), residual=False)
    assert not any(g_group(n) == 'residual' for n, _ in G.named_parameters())


def test_wrong_affinity_shape_and_labels():
    with pytest.raises(ValueError, match=r'\(C_T, C_S\) = \(35, 151\)'): CATGenerator(SRC, 35, np.eye(35, 150))
    G = CATGenerator(SRC, 35, np.full((35, 151), 1 / 151, np.float32))
    with pytest.raises(ValueError, match='label ids'): G(torch.full((1, *SRC.image_hw), 40))


@pytest.mark.parametrize('k', [0, 1, 3, 5])
def test_freezed_freezes_exactly_k_blocks(k):
    tcfg = oasis_config('cityscapes', 'quick')
    D = target_discriminator(tcfg, _source()['D'], k)
    frozen = [all(not p.requires_grad for p in b.parameters()) for b in D.body_down]
    assert frozen == [i < k for i in range(len(D.body_down))]
    others = [p for n, p in D.named_parameters() if not n.startswith('body_down.')]
    assert all(p.requires_grad for p in others)
    with pytest.raises(ValueError, match='encoder blocks'): freeze_d(D, len(D.body_down) + 1)


def test_d_head_is_fresh_with_target_classes():
    tcfg = oasis_config('cityscapes', 'quick'); src = _source()
    D = target_discriminator(tcfg, src['D'])
    assert D.layer_up_last.weight.shape[0] == 36
    assert D(torch.zeros(2, 3, *tcfg.image_hw)).shape == (2, 36, *tcfg.image_hw)
    assert torch.equal(D.body_up[0].conv2[-1].weight_orig, src['D']['body_up.0.conv2.1.weight_orig'])


EXPECTED_STAGE_GROUPS = {
    'cat': [{'affinity', 'first_conv', 'residual'}, 'all'],
    'cat-random': [{'affinity', 'first_conv', 'residual'}, 'all'],
    'scratch': ['all'],
    'transfergan': ['all'],
    'freezed': ['all'],
    'bsa': [{'affinity', 'first_conv'}],
    'minegan': [{'miner', 'affinity'}, 'all'],
    'cgantransfer': [{'affinity', 'residual', 'first_conv', 'spade_affine'}, {'residual', 'spade_affine', 'fc', 'other'}],
}


@pytest.mark.parametrize('method', list(METHODS))
def test_parameter_selection_per_stage(method):
    cfg = transfer_config(method, 'cityscapes', SRC, iters=4, stage1_iters=2)
    A = np.full((35, 151), 1 / 151, np.float32) if cfg.cat_init else None
    tr = TransferTrainer(cfg, _source() if METHODS[method].pretrained else None, A, device='cpu')
    present = {g_group(n) for n, _ in tr.G.named_parameters()}
    for i, exp in enumerate(EXPECTED_STAGE_GROUPS[method]):
        on = tr.set_stage(i)
        got = {g_group(n) for n in on}
        assert got == (present if exp == 'all' else exp & present), (method, i, got)
        assert sum(p.requires_grad for p in tr.G.parameters()) == len(on)
    assert len(cfg.stages) == len(EXPECTED_STAGE_GROUPS[method])
    assert ('miner' in present) == (method == 'minegan')
    assert ('residual' in present) == (method in ('cat', 'cat-random', 'cgantransfer'))


@pytest.mark.parametrize('method', list(METHODS))
def test_every_method_trains_without_nan(method):
    cfg = transfer_config(method, 'cityscapes', SRC, iters=4, stage1_iters=2)
    A = np.full((35, 151), 1 / 151, np.float32) if cfg.cat_init else None
    tr = TransferTrainer(cfg, _source() if METHODS[method].pretrained else None, A, device='cpu')
    d0 = {n: p.detach().clone() for n, p in tr.D.named_parameters()}
    g0 = {n: p.detach().clone() for n, p in tr.G.named_parameters()}
    stages = []
    for s in range(4):
        out = tr.step(_batch(cfg, seed=s), s)
        assert all(np.isfinite(v) for v in out.values()), out
        stages.append(out['stage'])
        if s == 1 and len(cfg.stages) > 1:   # end of stage 1: only stage-1 groups moved
            moved = {g_group(n) for n, p in tr.G.named_parameters() if not torch.equal(p, g0[n])}
            assert moved <= set(cfg.stages[0]) and moved, (method, moved)
    assert stages == ([1, 1, 2, 2] if len(cfg.stages) > 1 else [1, 1, 1, 1])
    frozen = [n for n in d0 if n.startswith(tuple(f'body_down.{i}.' for i in range(cfg.freeze_d)))]
    assert all(torch.equal(dict(tr.D.named_parameters())[n], d0[n]) for n in frozen)
    assert not torch.equal(tr.D.layer_up_last.weight, d0['layer_up_last.weight'])
    if METHODS[method].cgan_reg: assert 'G_reg' in out


def test_table4_switches():
    row = transfer_config('cat', 'cityscapes', SRC, freeze_d=False, two_stages=False, residual=False, cat_init=False)
    assert (row.freeze_d, len(row.stages), row.residual, row.cat_init) == (0, 1, False, False)
    full = transfer_config('cat', 'cityscapes', SRC)
    assert (full.freeze_d > 0, len(full.stages), full.residual, full.cat_init) == (True, 2, True, True)
    with pytest.raises(ValueError, match='needs an affinity'):
        TransferTrainer(full, _source(), None, device='cpu')


@pytest.fixture(scope='module')
def synth_pair(tmp_path_factory):
    from cat_nb.synth import write_synth
    from cat_nb.train import train_source, train_config
    d = tmp_path_factory.mktemp('transfer')
    write_synth(d/'ade', 'ade20k', 8, 4, 32, progress=False); write_synth(d/'cs', 'cityscapes', 8, 4, 32, progress=False)
    train_source(d/'ade', train_config('ade20k', 'quick', iters=2, ckpt_every=2, sample_every=2), d/'src', 'cpu', progress=False)
    return d


def test_resume_matches_uninterrupted(synth_pair):
    d = synth_pair
    A, _ = resolve_affinity('cityscapes', 'ade20k', method='synth-gt')
    cfg = transfer_config('cat', 'cityscapes', SRC, iters=4, stage1_iters=2, ckpt_every=2, sample_every=4, log_every=2, deterministic=True)
    full = transfer(d/'cs', cfg, d/'full', d/'src', A, device='cpu', progress=False)
    with pytest.raises(KeyboardInterrupt): transfer(d/'cs', cfg, d/'crash', d/'src', A, device='cpu', progress=False, _crash_at=3)
    assert sorted(p.name for p in (d/'crash'/'checkpoints').glob('*.pt')) == ['step_00000002.pt']
    res = transfer(d/'cs', cfg, d/'crash', d/'src', A, device='cpu', progress=False)
    assert res.step_done == 4 and res.stage == 1
    for k, v in full.G.state_dict().items(): torch.testing.assert_close(res.G.state_dict()[k], v, atol=1e-5, rtol=1e-4)
    other = dataclasses.replace(cfg, freeze_d=1)
    with pytest.raises(ValueError, match='another config'): transfer(d/'cs', other, d/'crash', d/'src', A, device='cpu', progress=False)


def test_cli_every_method_and_training_free(synth_pair):
    d = synth_pair
    for m in METHODS:
        args = ['--source', str(d/'src'), '--target-data', str(d/'cs'), '--like', 'cityscapes', '--method', m,
                '--out', str(d/f'cli_{m}'), '--iters', '2', '--stage1-iters', '1', '--no-progress', '--device', 'cpu']
        if m == 'cat': args += ['--affinity-method', 'synth-gt']
        assert transfer_cli(args) == 0, m
        G, cfg = load_transfer(d/f'cli_{m}', 'cpu')
        assert cfg.method == m
        with torch.no_grad(): assert torch.isfinite(G(torch.randint(0, 35, (1, 32, 64)))).all()
    assert transfer_cli(['--source', str(d/'src'), '--target-data', str(d/'cs'), '--like', 'cityscapes', '--training-free',
                         '--affinity-method', 'synth-gt', '--out', str(d/'tf'), '--no-progress', '--device', 'cpu']) == 0
    G, cfg = load_transfer(d/'tf', 'cpu')
    assert cfg.training_free
    G2 = training_free_generator(d/'src', resolve_affinity('cityscapes', 'ade20k', method='synth-gt')[0], 'cityscapes', device='cpu')
    lab = torch.randint(0, 35, (2, 32, 64)); z = torch.randn(2, SRC.z_dim)
    with torch.no_grad(): torch.testing.assert_close(G(lab, z), G2(lab, z))


def test_cli_errors(synth_pair, capsys):
    d = synth_pair
    with pytest.raises(SystemExit):
        transfer_cli(['--source', str(d/'src'), '--target-data', str(d/'cs'), '--like', 'cityscapes', '--method', 'cat', '--out', str(d/'e1')])
    assert 'needs --affinity' in capsys.readouterr().err
    assert transfer_cli(['--source', str(d/'nope'), '--target-data', str(d/'cs'), '--like', 'cityscapes', '--method', 'transfergan',
                         '--out', str(d/'e2')]) == 1
    assert 'no run folder, checkpoint file or official OASIS checkpoint folder at' in capsys.readouterr().err


@pytest.mark.parametrize('reg', ['cdc', 'ssr'])
def test_regularizers_in_training(reg):
    cfg = transfer_config('cat', 'cityscapes', SRC, iters=3, stage1_iters=1, regularizer=reg)
    assert cfg.lambda_reg == {'cdc': 1000.0, 'ssr': 5.0}[reg] and 0 <= cfg.reg_layer < SRC.num_res_blocks
    tr = TransferTrainer(cfg, _source(), np.full((35, 151), 1 / 151, np.float32), device='cpu', n_train=5)
    ref0 = {k: v.clone() for k, v in tr.G_ref.state_dict().items()}
    outs = [tr.step(_batch(cfg, seed=s), s) for s in range(3)]
    assert all(f'G_{reg}' in o and np.isfinite(o[f'G_{reg}']) for o in outs)
    assert outs[-1][f'G_{reg}'] > 0                              # G moved away from the reference
    assert all(torch.equal(v, ref0[k]) for k, v in tr.G_ref.state_dict().items())   # the reference stays frozen
    assert 'G_ref' in tr.state()
    with pytest.raises(ValueError, match='scratch'): transfer_config('scratch', 'cityscapes', SRC, regularizer=reg)


def test_standard_preset_schedule():
    assert TRANSFER_PRESETS['standard'] == dict(iters=300, stage1_iters=100, batch_size=4, eval_every=100, eval_n=100, log_every=10,
                                                sample_every=100, ckpt_every=100, lr_g=4e-4, ema_decay=0.995, lambda_vgg=10.0)
    std = transfer_config('cat', 'ade20k', oasis_config('cityscapes', 'standard'))
    tc = std.train
    assert (tc.iters, std.stage1_iters, tc.batch_size, std.eval_every, std.eval_n, tc.log_every, tc.sample_every, tc.ckpt_every) == \
           (300, 100, 4, 100, 100, 10, 100, 100)
    assert tc.model.image_hw == (64, 64) and tc.snapshot_every == 0
    # finetuning keeps the source recipe's losses and lr_g (VGG λ 10, 4e-4) with its own faster EMA (the source's is 0.999)
    assert (tc.lr_g, tc.ema_decay, tc.lambda_vgg) == (4e-4, 0.995, 10.0)
    assert transfer_config('cat', 'ade20k', oasis_config('cityscapes', 'standard'), lambda_vgg=0.0, lr_g=1e-4).train.lambda_vgg == 0.0
    assert transfer_config('cat', 'cityscapes', SRC).train.iters == 12                 # quick kept


def test_plain_step_is_the_source_training_step():
    "TransferTrainer.step is OASISTrainer.step with its hooks (FreezeD and stages included): it adds nothing but the stage switch and logs."
    cfg = transfer_config('cat', 'cityscapes', SRC, iters=4, stage1_iters=4)
    A = np.full((35, 151), 1 / 151, np.float32)
    a, b = TransferTrainer(cfg, _source(), A, device='cpu'), TransferTrainer(cfg, _source(), A, device='cpu')
    for s in range(3):
        la, lb = a.step(_batch(cfg, seed=s), s), OASISTrainer.step(b, _batch(cfg, seed=s), s)
        assert all(la[k] == lb[k] for k in lb), (la, lb)
    for n in ('G', 'D', 'EMA'):
        for (k, x), y in zip(getattr(a, n).state_dict().items(), getattr(b, n).state_dict().values()): assert torch.equal(x, y), (n, k)


def test_cdc_d_side_schedule_and_heads():
    cfg = transfer_config('freezed', 'cityscapes', SRC, iters=8, regularizer='cdc', cdc_anchors=3, cdc_every=2)
    tr = TransferTrainer(cfg, _source(), None, device='cpu')
    assert tr.anchors.shape == (3, SRC.z_dim) and tr.D.patch_head.block == 2
    frozen = {n: p.detach().clone() for n, p in tr.D.named_parameters() if n.startswith(('body_down.0.', 'body_down.1.', 'body_down.2.'))}
    head = tr.D.patch_head.net[1].weight.detach().clone()
    outs = []
    for s in range(4):
        outs.append(tr.step(_batch(cfg, seed=s), s))
        moved = not torch.equal(tr.D.patch_head.net[1].weight, head); head = tr.D.patch_head.net[1].weight.detach().clone()
        assert moved == (s % 2 == 1), s                             # the patch head trains in patch iterations only
    assert [o['cdc_image'] for o in outs] == [1.0, 0.0, 1.0, 0.0]
    assert all(torch.equal(p, frozen[n]) for n, p in tr.D.named_parameters() if n in frozen)
    z = tr.adv_noise(2, 0)                                          # anchor iteration: noise near the anchors
    assert torch.cdist(z, tr.anchors).min(1).values.max() < 1.0 < torch.cdist(tr.adv_noise(3, 0), tr.anchors).min(1).values.min()
    st = tr.state(); assert torch.equal(st['cdc_anchors'], tr.anchors) and any(k.startswith('patch_head.') for k in st['D'])
    with pytest.raises(ValueError, match='encoder blocks'): transfer_config('cat', 'cityscapes', SRC, regularizer='cdc', cdc_patch_block=9)


def test_ssr_all_blocks_loss_reaches_every_head_and_g():
    cfg = transfer_config('transfergan', 'cityscapes', SRC, iters=2, regularizer='ssr')
    tr = TransferTrainer(cfg, _source(), None, device='cpu')
    heads = [h.weight.detach().clone() for h in tr.D.block_heads]
    assert len(heads) == 2 * SRC.num_res_blocks - 1
    out = tr.step(_batch(cfg), 0)
    assert all(not torch.equal(h.weight, w) for h, w in zip(tr.D.block_heads, heads)) and out['G_ssr'] >= 0
    no_d = transfer_config('transfergan', 'cityscapes', SRC, iters=2, regularizer='ssr', reg_d=False)
    assert not hasattr(TransferTrainer(no_d, _source(), None, device='cpu').D, 'block_heads')


@pytest.mark.parametrize('reg', ['cdc', 'ssr'])
def test_resume_with_regularizer_matches_uninterrupted(synth_pair, reg):
    d = synth_pair
    cfg = transfer_config('transfergan', 'cityscapes', SRC, iters=4, ckpt_every=2, sample_every=4, log_every=2, deterministic=True,
                          regularizer=reg)
    full = transfer(d/'cs', cfg, d/f'full_{reg}', d/'src', device='cpu', progress=False)
    with pytest.raises(KeyboardInterrupt): transfer(d/'cs', cfg, d/f'crash_{reg}', d/'src', device='cpu', progress=False, _crash_at=3)
    res = transfer(d/'cs', cfg, d/f'crash_{reg}', d/'src', device='cpu', progress=False)
    for k, v in full.D.state_dict().items(): torch.testing.assert_close(res.D.state_dict()[k], v, atol=1e-5, rtol=1e-4)
    for k, v in full.G.state_dict().items(): torch.testing.assert_close(res.G.state_dict()[k], v, atol=1e-5, rtol=1e-4)


def test_run_json_records_inputs(synth_pair):
    d = synth_pair
    from cat_nb.data import SegDataset
    names = SegDataset(d/'cs', 'cityscapes', 'train', size=32).names[:4]
    (d/'sub4.txt').write_text('\n'.join(names) + '\n')
    A, prov = resolve_affinity('cityscapes', 'ade20k', method='synth-gt'); np.save(d/'A.npy', A)
    args = ['--source', str(d/'src'), '--target-data', str(d/'cs'), '--like', 'cityscapes', '--subset', str(d/'sub4.txt'),
            '--affinity', str(d/'A.npy'), '--out', str(d/'rj'), '--iters', '2', '--stage1-iters', '1', '--no-progress', '--device', 'cpu']
    assert transfer_cli(args) == 0
    info = read_run_info(d/'rj')
    assert info['target_data'] == str((d/'cs').resolve()) and info['like'] == 'cityscapes' and info['size'] == 32
    assert info['subset'] == str((d/'sub4.txt').resolve()) and info['train_names'] == names and info['n_train'] == 4
    assert info['source'] == str((d/'src').resolve()) and info['affinity_file'] == str((d/'A.npy').resolve())
    assert info['affinity'].startswith('file:A.npy:sha=') and info['affinity'] == RunDir(d/'rj').config['affinity']
    assert np.allclose(np.load(d/'rj'/info['affinity_init']), A)


def test_eval_miou_with_cached_segmenter(synth_pair, monkeypatch, capsys):
    d = synth_pair
    monkeypatch.setenv('CAT_NB_WEIGHTS', str(d/'weights'))           # the cached segmenter is trained here, not in the user's cache
    args = ['--source', str(d/'src'), '--target-data', str(d/'cs'), '--like', 'cityscapes', '--training-free', '--affinity-method',
            'synth-gt', '--out', str(d/'ev'), '--no-progress', '--device', 'cpu', '--eval', '--eval-metrics', 'miou', '--seg-preset', 'quick']
    assert transfer_cli(args) == 0
    r = json.loads((d/'ev'/'eval.json').read_text())
    assert 0 <= r['miou'] <= 1 and 0 <= r['miou_real'] <= 1 and 'fid' not in r and r['seg_preset'] == 'quick'
    assert r['n_val'] == 4 and r['metrics_requested'] == ['miou']
    assert list((d/'weights'/'segmenters').glob('cityscapes_32_*/segmenter.pt'))
    assert 'mIoU' in capsys.readouterr().out
    with pytest.raises(SystemExit): transfer_cli(args[:-4] + ['--eval-metrics', 'fid,nope'])
    assert 'choose from' in capsys.readouterr().err


@pytest.mark.slow
def test_eval_default_metrics(synth_pair, monkeypatch):
    d = synth_pair
    monkeypatch.setenv('CAT_NB_WEIGHTS', str(d/'weights'))
    assert transfer_cli(['--source', str(d/'src'), '--target-data', str(d/'cs'), '--like', 'cityscapes', '--training-free',
                         '--affinity-method', 'synth-gt', '--out', str(d/'ev_all'), '--no-progress', '--device', 'cpu', '--eval',
                         '--seg-preset', 'quick']) == 0
    r = json.loads((d/'ev_all'/'eval.json').read_text())
    assert {'fid', 'kid', 'miou', 'miou_real'} <= set(r) and np.isfinite(r['fid'])


DDP_SCRIPT = """
import os, sys, torch
torch.set_num_threads(1)
from cat_nb.transfer import transfer, transfer_config
from cat_nb.oasis import oasis_config
d, out, res = sys.argv[1:4]
cfg = transfer_config('cat', 'cityscapes', oasis_config('ade20k', 'quick'), iters=3, stage1_iters=1, batch_size=4, ckpt_every=3,
                      sample_every=3, log_every=1, regularizer='cdc', cdc_every=2)
from cat_nb.transfer import resolve_affinity
A, _ = resolve_affinity('cityscapes', 'ade20k', method='synth-gt')
tr = transfer(d + '/cs', cfg, out, d + '/src', A, device='cpu', progress=False)
import torch.distributed as dist
torch.save(dict(rank=tr.rank, world=tr.world, G=tr.G.state_dict(), D=tr.D.state_dict(), EMA=tr.EMA.state_dict(),
                anchors=tr.anchors), f"{res}/rank{tr.rank}.pt")
dist.destroy_process_group()
"""


def test_ddp_torchrun_two_gloo_processes_hold_identical_parameters(synth_pair, tmp_path):
    "torchrun --nproc_per_node=2 on the CPU (gloo): CAT + CDC (whose per-process losses differ) for 3 steps; ranks end identical."
    d = synth_pair
    script = tmp_path/'ddp_transfer.py'; script.write_text(DDP_SCRIPT)
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', str(script),
                        str(d), str(tmp_path/'run'), str(tmp_path)], env={**os.environ, 'OMP_NUM_THREADS': '1'},
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path/f'rank{k}.pt') for k in (0, 1))
    assert (r0['rank'], r1['rank'], r0['world'], r1['world']) == (0, 1, 2, 2)
    for net in ('G', 'D', 'EMA'):
        for k, v in r0[net].items(): assert torch.equal(v, r1[net][k]), (net, k)
    assert torch.equal(r0['anchors'], r1['anchors'])
    run = RunDir(tmp_path/'run')
    assert [p.name for p in (tmp_path/'run'/'checkpoints').glob('*.pt')] == ['step_00000003.pt']
    ck = run.load_latest('cpu')
    for k, v in ck['G'].items(): assert torch.equal(v, r0['G'][k]), k
    steps = [m['step'] for m in run.metrics() if 'G' in m]
    assert steps == [1, 2, 3] and read_run_info(tmp_path/'run')['world'] == 2   # process 0 alone logs
    src = torch.load(sorted((d/'src'/'checkpoints').glob('*.pt'))[-1], weights_only=False)
    assert any(not torch.equal(v, src['EMA'][k]) for k, v in r0['G'].items() if k in src['EMA'] and v.is_floating_point())
