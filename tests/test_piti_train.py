"CAT-PITI's model side (VPT-deep prompts, parameter groups and freezing) and PITI training: label drop, one step, resume bit for bit."
import math
from pathlib import Path
import pytest, torch
from cat_nb.core import RunDir
from cat_nb.piti import (KINDS, PARAM_GROUPS, CAT_PITI_TRAIN, PROMPTS, piti_config, build_piti, build_on_meta, randomize_,
                         load_piti_state, official_state, state_dict_listing, read_listing, n_params)
from cat_nb.diffusion import diffusion_for
from cat_nb.piti_train import PITITrainConfig, PITITrainer, PITIItems, piti_items, piti_train_config, train_piti
from cat_nb.synth import write_synth

REF = Path(__file__).parent/'data'/'piti_state_dict_coco.txt.gz'
ROUND_OFF = {'encoder.cnn.conv5.bias'}      # followed by InstanceNorm, which cancels it: its gradient is round-off, maybe 0


pytestmark = pytest.mark.usefixtures('one_thread')      # conftest.py: single-threaded torch


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    return write_synth(tmp_path_factory.mktemp('synth')/'ade', 'ade20k', n_train=8, n_val=4, size=32, progress=False)


def _inputs(cfg, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.num_classes, (B, cfg.label_size, cfg.label_size), generator=g)
    return ids, torch.randn(B, 3, cfg.image_size, cfg.image_size, generator=g), torch.tensor([7., 600.][:B])


def _flat(st, pre=''):
    "Every tensor of a nested state (dicts, lists) by its path."
    if isinstance(st, torch.Tensor): return {pre: st}
    if isinstance(st, dict): return {k: v for n, x in st.items() for k, v in _flat(x, f'{pre}/{n}').items()}
    if isinstance(st, (list, tuple)): return {k: v for n, x in enumerate(st) for k, v in _flat(x, f'{pre}/{n}').items()}
    return {}


# ---- prompts --------------------------------------------------------------------------------------------------------

def test_no_prompts_is_the_plain_encoder_bit_for_bit():
    m = randomize_(build_piti(piti_config('base', 'quick')), 5).eval(); e = m.encoder
    ids, _, _ = _inputs(m.cfg)
    with torch.no_grad():
        h = e.cnn(ids).flatten(2).transpose(1, 2) + e.positional_embedding[:, 1:]
        h = torch.cat([h, (e.cls_token + e.positional_embedding[:, :1]).expand(2, -1, -1)], 1)
        for b in e.transformer.resblocks: h = b(h)
        h = e.final_ln(h)
        xf_proj, xf_out = m.encode(ids)
    assert torch.equal(xf_proj, h[:, -1]) and torch.equal(xf_out, h[:, :-1].transpose(1, 2))
    assert not hasattr(m, 'prompts') and not any(k.startswith(PROMPTS) for k in m.state_dict())


def test_same_seed_builds_the_same_model_with_and_without_prompts():
    "Prompts are created last: the official parameters are drawn exactly as before."
    torch.manual_seed(0); a = build_piti(piti_config('base', 'quick'))
    torch.manual_seed(0); b = build_piti(piti_config('base', 'quick', n_prompts=3))
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sb) == list(sa) + ['prompts.tokens']
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert 0.01 < float(b.prompts.tokens.detach().std()) < 0.03                         # N(0, 0.02²)


def test_prompts_change_the_output_but_not_the_token_count():
    mp = randomize_(build_piti(piti_config('base', 'quick', n_prompts=3)), 4).eval()
    plain = build_piti(piti_config('base', 'quick')).eval()
    plain.load_state_dict({k: v for k, v in mp.state_dict().items() if not k.startswith(PROMPTS)})
    ids, x, t = _inputs(mp.cfg)
    with torch.no_grad():
        (pp, po), (qp, qo) = mp.encode(ids), plain.encode(ids)
        assert (po.shape, pp.shape) == (qo.shape, qp.shape) == ((2, 64, 64), (2, 64))
        assert (po - qo).abs().max() > 1e-3 and (pp - qp).abs().max() > 1e-3
        assert (mp(x, t, ids) - plain(x, t, ids)).abs().max() > 1e-4
        for layer in range(mp.cfg.xf_layers):                                   # VPT-deep: every layer's prompts take part
            d = torch.randn(3, 64, generator=torch.Generator().manual_seed(layer))   # (not a constant shift: LayerNorm removes those)
            mp.prompts.tokens[layer] += d
            assert (mp.encode(ids)[1] - po).abs().max() > 1e-3, layer
            mp.prompts.tokens[layer] -= d


@pytest.mark.parametrize('kind', KINDS)
def test_prompts_stay_out_of_the_official_layout(kind):
    ref = read_listing(REF)[kind]
    rgb = build_on_meta(piti_config(kind, 'paper', input='rgb', n_prompts=4))
    assert state_dict_listing(rgb) == ref + ['prompts.tokens\t[8, 4, 512]']     # the official keys unchanged, in order, prompts after
    assert n_params(rgb) == n_params(build_on_meta(piti_config(kind, 'paper', input='rgb'))) + 8 * 4 * 512
    meta = {l.split('\t')[0]: torch.empty(eval(l.split('\t')[1]), device='meta') for l in ref}
    m = load_piti_state(build_on_meta(piti_config(kind, 'paper', n_prompts=4)), meta, assign=True)   # strict, official file, no prompts
    assert m.prompts.tokens.shape == (8, 4, 512)
    meta.pop('decoder.out.2.bias')
    with pytest.raises(RuntimeError, match='decoder.out.2.bias'):              # still strict on every official key
        load_piti_state(build_on_meta(piti_config(kind, 'paper', n_prompts=4)), meta, assign=True)


def test_official_file_loads_strictly_into_a_prompt_model(tmp_path):
    official = randomize_(build_piti(piti_config('base', 'quick', input='rgb')), 1)
    torch.save(official.state_dict(), tmp_path/'base_mask.pt')
    m = build_piti(piti_config('base', 'quick', n_prompts=2)); p0 = m.prompts.tokens.detach().clone()
    load_piti_state(m, tmp_path/'base_mask.pt')
    assert torch.equal(m.prompts.tokens, p0)                                    # keeps its own (fresh) prompts
    assert torch.equal(m.decoder.out[2].weight, official.decoder.out[2].weight)
    with torch.no_grad(): m.prompts.tokens += 1
    again = load_piti_state(build_piti(piti_config('base', 'quick', n_prompts=2)), m.state_dict())
    assert torch.equal(again.prompts.tokens, m.prompts.tokens)                  # a state with prompts restores them
    with pytest.raises(ValueError, match='n_prompts=2'): load_piti_state(build_piti(piti_config('base', 'quick')), m.state_dict())
    with pytest.raises(ValueError, match='drop_prompts=True'): official_state(m.state_dict())
    rgb = load_piti_state(build_piti(piti_config('base', 'quick', input='rgb')), official_state(m.state_dict(), drop_prompts=True))
    assert list(rgb.state_dict()) == list(official.state_dict())
    assert torch.allclose(rgb.encoder.cnn.conv1.weight, official.encoder.cnn.conv1.weight, atol=1e-5)


# ---- parameter groups and freezing ------------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('preset,n', [('quick', 0), ('quick', 3), ('standard', 2), ('paper', 4)])
def test_param_groups_cover_every_parameter_exactly_once(kind, preset, n):
    m = build_on_meta(piti_config(kind, preset, n_prompts=n))
    groups = m.param_groups()
    assert tuple(groups) == PARAM_GROUPS
    names = [k for g in groups.values() for k in g]
    assert len(names) == len(set(names)) and set(names) == set(dict(m.named_parameters()))
    assert sorted({k.split('.')[2] for k in groups['cnn_last']}) == ['conv5', 'conv6', 'norm5']
    assert set(groups['first_layer']) == {'encoder.cnn.conv1.weight', 'encoder.cnn.conv1.bias'}
    assert len(groups['prompts']) == int(n > 0) and all(k.startswith('decoder.') for k in groups['decoder'])


def test_paper_group_sizes():
    c = {g: sum(p.numel() for p in ps.values()) for g, ps in build_on_meta(piti_config('base', 'paper', n_prompts=4)).param_groups().items()}
    assert c == dict(first_layer=288_544, cnn=388_480, cnn_last=3_540_992, transformer=25_352_192, prompts=16_384, decoder=308_728_902)


def test_cat_piti_freezing_gives_gradients_to_exactly_cnn_last_and_prompts():
    m = randomize_(build_piti(piti_config('base', 'quick', n_prompts=3)), 4)      # random weights: a fresh model's zero output conv stops all gradients
    trainable = m.set_trainable(CAT_PITI_TRAIN)
    want = {n for g in CAT_PITI_TRAIN for n in m.param_groups()[g]}
    assert len(trainable) == len(want) == 7
    ids, _, _ = _inputs(m.cfg); dif = diffusion_for(m.cfg); g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    dif.training_losses(lambda xt, ts: m(xt, ts, ids), x0, dif.sample_t(2, g), generator=g)['loss'].mean().backward()
    assert {n for n, p in m.named_parameters() if p.grad is not None} == want
    nonzero = {n for n, p in m.named_parameters() if p.grad is not None and p.grad.abs().max() > 0}
    assert want - ROUND_OFF <= nonzero
    with pytest.raises(ValueError, match='unknown parameter group'): m.set_trainable(('unet',))


# ---- training ------------------------------------------------------------------------------------------------------------

def test_label_drop_rate_and_what_the_encoder_sees():
    tr = PITITrainer(piti_train_config('ade20k', 'quick', batch_size=8, uncond_p=0.2), 'cpu')
    n = 500; k = int(sum(tr.drop_mask(s).sum() for s in range(n)))
    sd = math.sqrt(0.2 * 0.8 / (n * 8))
    assert abs(k / (n * 8) - 0.2) < 4 * sd, k / (n * 8)
    assert torch.equal(tr.drop_mask(7), tr.drop_mask(7))
    assert int(PITITrainer(piti_train_config('ade20k', 'quick', batch_size=8, uncond_p=0.0), 'cpu').drop_mask(0).sum()) == 0
    assert bool(PITITrainer(piti_train_config('ade20k', 'quick', batch_size=8, uncond_p=1.0), 'cpu').drop_mask(0).all())
    s = next(s for s in range(100) if 0 < int(tr.drop_mask(s).sum()) < 8)
    lab = torch.randint(0, 151, (8, 32, 32), generator=torch.Generator().manual_seed(0))
    seen = []; tr.model.encoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    tr.step(dict(image=torch.rand(8, 3, 32, 32) * 2 - 1, label=lab), s)
    drop = tr.drop_mask(s)
    assert all(bool((seen[0][i] == 151).all()) for i in range(8) if drop[i])
    assert all(torch.equal(seen[0][i], lab[i]) for i in range(8) if not drop[i])


def test_one_step_changes_only_the_trainable_parameters():
    cfg = piti_train_config('ade20k', 'quick', model=dict(n_prompts=2), trainable=CAT_PITI_TRAIN, batch_size=4)
    tr = PITITrainer(cfg, 'cpu', init_state=randomize_(build_piti(cfg.model), 0).state_dict())
    want = set(tr.trainable_names)
    before = {n: {k: v.clone() for k, v in net.state_dict().items()} for n, net in (('model', tr.model), ('EMA', tr.EMA))}
    g = torch.Generator().manual_seed(0)
    out = tr.step(dict(image=torch.rand(4, 3, 32, 32, generator=g) * 2 - 1, label=torch.randint(0, 151, (4, 32, 32), generator=g)), 0)
    assert all(math.isfinite(v) for v in out.values()), out
    for n, net in (('model', tr.model), ('EMA', tr.EMA)):
        changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[n][k])}
        assert want - ROUND_OFF <= changed <= want, (n, changed ^ want)


def test_bad_batches_are_refused():
    tr = PITITrainer(piti_train_config('ade20k', 'quick'), 'cpu')
    with pytest.raises(ValueError, match='piti_items'): tr.check_batch(torch.zeros(1, 3, 64, 64), torch.zeros(1, 64, 64, dtype=torch.long))
    with pytest.raises(ValueError, match='CAT transfer'): tr.check_batch(torch.zeros(1, 3, 32, 32), torch.full((1, 32, 32), 160))


def test_items_resize_and_flip(synth):
    items = piti_items(synth, piti_train_config('ade20k', 'quick'))
    it = items[0]
    assert it['image'].shape == (3, 32, 32) and it['label'].shape == (32, 32) and it['label'].dtype == torch.int64
    paper = PITIItems(items.ds, 64, 256, flip=False)[0]
    assert paper['image'].shape == (3, 64, 64) and paper['label'].shape == (256, 256)


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, synth):
    cfg = piti_train_config('ade20k', 'quick', iters=6, batch_size=4, ckpt_every=2, sample_every=3, uncond_p=0.5,
                            model=dict(dropout=0.1, n_prompts=2))
    a = train_piti(cfg, synth, tmp_path/'a', progress=False)
    with pytest.raises(KeyboardInterrupt): train_piti(cfg, synth, tmp_path/'b', progress=False, _crash_at=5)
    assert RunDir(tmp_path/'b').latest_checkpoint().name == 'step_00000004.pt'
    b = train_piti(cfg, synth, tmp_path/'b', progress=False)
    assert b.step_done == 6
    sa, sb = _flat(a.state()), _flat(b.state())
    assert sa.keys() == sb.keys() and len(sa) > 500
    assert [k for k in sa if not torch.equal(sa[k], sb[k])] == []
    run = RunDir(tmp_path/'b')
    assert [r['event'] for r in run.metrics() if 'event' in r] == ['start', 'interrupted', 'resume', 'end'] and run.metrics()[-1]['step'] == 6
    assert PITITrainConfig(**run.config) == cfg
    assert sorted(p.name for p in (tmp_path/'b'/'samples').glob('*.png')) == ['step_00000003.png', 'step_00000006.png']
    with pytest.raises(ValueError, match='another config'): train_piti(piti_train_config('ade20k', 'quick'), synth, tmp_path/'b', progress=False)


@pytest.mark.slow
def test_overfits_four_images(synth):
    tr = PITITrainer(piti_train_config('ade20k', 'quick', batch_size=4, lr=1e-3, uncond_p=0.0), 'cpu')
    fixed = PITIItems(piti_items(synth, tr.cfg).ds, 32, 32, flip=False)
    four = dict(image=torch.stack([fixed[i]['image'] for i in range(4)]), label=torch.stack([fixed[i]['label'] for i in range(4)]))
    t = torch.tensor([10, 100, 300, 500, 700, 900]).repeat_interleave(4)
    x, noise = four['image'].repeat(6, 1, 1, 1), torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    def loss():
        tr.model.eval()
        with torch.no_grad(): return tr.diffusion.training_losses(lambda xt, ts: tr.model(xt, ts, four['label'].repeat(6, 1, 1)), x, t, noise)['loss'].mean().item()
    l0 = loss()
    for s in range(100): tr.step(four, s)
    assert loss() < 0.5 * l0


# ---- several processes ---------------------------------------------------------------------------------------------------

class RandomItems(torch.utils.data.Dataset):
    "Tiny random dataset with the SegDataset item layout."
    def __init__(self, n=8, size=32, n_ids=151, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.lab, self.img = torch.randint(0, n_ids, (n, size, size), generator=g), torch.rand(n, 3, size, size, generator=g) * 2 - 1
    def __len__(self): return len(self.lab)
    def __getitem__(self, i): return {'image': self.img[i], 'label': self.lab[i]}


def _ddp_cfg(**kw): return piti_train_config('ade20k', 'quick', batch_size=4, uncond_p=0.5, **kw)
def _source():
    "The same random weights in every process (gradients then reach every layer, unlike a fresh model's)."
    torch.manual_seed(0); return randomize_(build_piti(_ddp_cfg().model), 0).state_dict()


def _first_step(tr):
    "Loss dict and (all-reduced) gradients of step 0 on this process's slice of the global batch."
    from cat_nb.train import SeededItems, StepBatches
    items = SeededItems(PITIItems(RandomItems(), 32, 32))
    idx = next(iter(StepBatches(len(items), tr.cfg.batch_size, tr.rank, tr.world, tr.cfg.seed, 0, 1)))
    out = tr.step(torch.utils.data.default_collate([items[i] for i in idx]), 0)
    return out, {n: p.grad.clone() for n, p in tr.model.named_parameters() if p.grad is not None}


def _ddp_worker(rank, world, port, res):
    import os
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist
    run = train_piti(_ddp_cfg(iters=2, ckpt_every=2, sample_every=2), RandomItems(), Path(res)/'run', 'cpu', progress=False)
    out, grads = _first_step(PITITrainer(_ddp_cfg(), 'cpu', rank, world, init_state=_source()))
    torch.save(dict(out=out, grads=grads, params=run.model.state_dict()), Path(res)/f'rank{rank}.pt')
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    import socket, torch.multiprocessing as mp
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path/f'rank{r}.pt') for r in (0, 1))
    assert all(torch.equal(r0['params'][k], r1['params'][k]) for k in r0['params'])      # ranks hold identical weights
    assert sorted(p.name for p in (tmp_path/'run'/'checkpoints').glob('*.pt')) == ['step_00000002.pt']
    out, grads = _first_step(PITITrainer(_ddp_cfg(), 'cpu', init_state=_source()))     # one process, the same global batch of 4
    assert sum(bool(g.abs().max() > 0) for g in grads.values()) > 0.9 * len(grads)
    for k in ('loss', 'mse', 'vb', 'dropped'): assert math.isclose((r0['out'][k] + r1['out'][k]) / 2, out[k], rel_tol=1e-4, abs_tol=1e-6), k
    assert r0['grads'].keys() == grads.keys()
    for k, g in grads.items(): assert torch.allclose(r0['grads'][k], g, rtol=1e-3, atol=1e-6), k
