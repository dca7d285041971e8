"PITI: paper-preset parameter counts and key listing (meta device), strict loading of official-layout files, the one-hot fold, seeded sampling."
from pathlib import Path
import pytest, torch
import torch.nn.functional as F
from cat_nb.piti import (KINDS, PAPER_PARAMS, CONV1, piti_config, build_piti, build_on_meta, n_params, state_dict_listing, read_listing,
                         load_piti_state, randomize_, onehot_state, fold_conv1, rgb_code, SemanticEncoder)
from cat_nb.diffusion import sample, space_timesteps, create_diffusion

REF = Path(__file__).parent/'data'/'piti_state_dict_coco.txt.gz'        # gzipped copy of ../shared/reference/piti_state_dict_coco.txt
SHARED = Path(__file__).resolve().parents[2]/'shared'/'reference'/'piti_state_dict_coco.txt'


def test_reference_listing_copy_is_small_and_complete():
    assert REF.stat().st_size < 20_000
    ref = read_listing(REF)
    assert (len(ref['base']), len(ref['upsample'])) == (708, 722)
    if SHARED.exists(): assert read_listing(SHARED) == ref


@pytest.mark.parametrize('kind', KINDS)
def test_paper_param_counts_and_listing(kind):
    ref = read_listing(REF)[kind]
    rgb = build_on_meta(piti_config(kind, 'paper', input='rgb'))          # the official layout: conv1 reads RGB
    assert n_params(rgb) == PAPER_PARAMS[kind]
    assert state_dict_listing(rgb) == ref                                 # every key and shape, in order
    oh = build_on_meta(piti_config(kind, 'paper'))                        # one-hot: 182 classes + unlabeled + null map
    assert state_dict_listing(oh) == [l.replace('[32, 3, 7, 7]', '[32, 184, 7, 7]') for l in ref]
    assert n_params(oh) == PAPER_PARAMS[kind] + 32 * 49 * 181


@pytest.mark.parametrize('kind', KINDS)
def test_paper_official_layout_loads_strict_on_meta(kind):
    meta = {l.split('\t')[0]: torch.empty(eval(l.split('\t')[1]), device='meta') for l in read_listing(REF)[kind]}
    m = load_piti_state(build_on_meta(piti_config(kind, 'paper')), meta, assign=True)
    assert m.encoder.cnn.conv1.weight.shape == (32, 184, 7, 7)
    meta.pop('decoder.transformer_proj.bias')
    with pytest.raises(RuntimeError, match='transformer_proj.bias'):
        load_piti_state(build_on_meta(piti_config(kind, 'paper')), meta, assign=True)


@pytest.mark.parametrize('kind', KINDS)
def test_official_layout_file_loads_strict_and_computes_the_same(tmp_path, kind):
    official = randomize_(build_piti(piti_config(kind, 'quick', input='rgb')), 1).eval()
    torch.save({'module.' + k: v for k, v in official.state_dict().items()}, tmp_path/f'{kind}_mask.pt')   # DDP prefix too
    mine = load_piti_state(build_piti(piti_config(kind, 'quick')), tmp_path/f'{kind}_mask.pt').eval()
    so, sm = official.state_dict(), mine.state_dict()
    assert list(sm) == list(so)
    assert all(torch.equal(sm[k], so[k]) for k in so if k != CONV1)
    assert torch.allclose(sm[CONV1], fold_conv1(so[CONV1], 183))
    cfg = mine.cfg; g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 183, (2, cfg.label_size, cfg.label_size), generator=g)
    x, t = torch.randn(2, 3, cfg.image_size, cfg.image_size, generator=g), torch.tensor([5., 900.])
    lr = torch.randn(2, 3, cfg.low_res, cfg.low_res, generator=g) if cfg.low_res else None
    with torch.no_grad(): assert (mine(x, t, ids, lr) - official(x, t, rgb_code(ids, 183), lr)).abs().max() <= 1e-5


def test_loading_refuses_what_it_cannot_represent(tmp_path):
    oh = randomize_(build_piti(piti_config('base', 'quick')), 2)
    with pytest.raises(ValueError, match='trained on one-hot maps'):       # a one-hot conv1 that is no colour fold
        load_piti_state(build_piti(piti_config('base', 'quick', input='rgb')), oh.state_dict())
    with pytest.raises(ValueError, match='CAT transfer'):
        load_piti_state(build_piti(piti_config('base', 'quick', 'ade20k')), oh.state_dict())
    (tmp_path/'bad.pt').write_bytes(b'\x00garbage')
    with pytest.raises(RuntimeError, match='corrupt'): load_piti_state(oh, tmp_path/'bad.pt')


@pytest.mark.parametrize('preset', ['quick', 'paper'])
def test_onehot_fold_equals_rgb_encoder(preset):
    "Random weights; labels include the null map (white in RGB). Paper widths on a 256x256 map take about a second."
    cfg = piti_config('base', preset, input='rgb')
    rgb = randomize_(SemanticEncoder(cfg), 0).eval()
    oh = SemanticEncoder(piti_config('base', preset)).eval()
    oh.load_state_dict(onehot_state(rgb.state_dict(), 183), strict=True)
    S = cfg.label_size; ids = torch.randint(0, 183, (1, S, S), generator=torch.Generator().manual_seed(0)); ids[:, :S // 4, :S // 4] = 183
    with torch.no_grad():
        a, b = rgb(rgb_code(ids, 183)), oh(ids)
        if S <= 64: assert max((p - q).abs().max() for p, q in zip(b, oh(F.one_hot(ids, 184).permute(0, 3, 1, 2).float()))) <= 1e-4
        other = rgb(rgb_code(torch.zeros_like(ids), 183))
    assert max(float((p - q).abs().max()) for p, q in zip(a, b)) <= 1e-5
    assert float((a[0] - other[0]).abs().max()) > 1e-3                                       # the comparison is not vacuous


def test_respacing_counts():
    assert len(space_timesteps(1000, '250')) == 250
    f27 = space_timesteps(1000, 'fast27')
    assert len(f27) == 27 and 997 in f27 and 999 not in f27
    assert create_diffusion('linear', respacing='fast27').num_timesteps == 27


def test_sampler_is_deterministic_per_seed():
    m = randomize_(build_piti(piti_config('base', 'quick')), 0)
    lab = torch.randint(0, 183, (2, 32, 32), generator=torch.Generator().manual_seed(1))
    kw = dict(respacing='6', progress=False, guidance=1.3)
    a, b = sample(m, lab, seed=0, **kw), sample(m, lab, seed=0, **kw)
    assert a.shape == (2, 3, 32, 32) and torch.equal(a, b)
    c = sample(m, lab, seed=[7, 8], **kw)
    assert all(not torch.allclose(a[i], c[i], atol=1e-3) for i in range(2))
    # batch-size-dependent GEMM blocking moves pixels by ~1e-5 after 6 steps; guidance moves them by ~1: 1e-3 tells them apart
    assert torch.allclose(sample(m, lab[1:], seed=[1], **kw), a[1:], atol=1e-3)      # image i depends on its seed, not its batch
    d1 = sample(m, lab, seed=0, method='ddim', **kw)
    assert torch.equal(d1, sample(m, lab, seed=0, method='ddim', **kw))
    cond = sample(m, lab, seed=0, respacing='6', progress=False)
    assert torch.allclose(sample(m, lab, seed=0, respacing='6', progress=False, force_cfg=True), cond, atol=1e-3)   # CFG scale 1
    assert not torch.allclose(a, cond, atol=1e-1)
