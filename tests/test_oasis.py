"OASIS architecture: official state_dict layout, parameter counts, checkpoint loading, noise, bad input."
from pathlib import Path
import pytest, torch
from cat_nb.oasis import (oasis_config, build_oasis, build_on_meta, state_dict_listing, parse_listing, n_params,
                          load_oasis_state, model_info_cli, region_noise, PAPER_PARAMS)

REF = Path(__file__).parent/'data'/'oasis_state_dict_ade20k.txt'


def test_paper_listing_matches_official_key_for_key():
    ref = parse_listing(REF.read_text())
    G, D = build_on_meta(oasis_config('ade20k', 'paper'))
    assert state_dict_listing(G) == ref['G']          # same keys, same shapes, same order
    assert state_dict_listing(D) == ref['D']
    assert (len(ref['G']), len(ref['D'])) == (208, 130)


@pytest.mark.parametrize('like', ['ade20k', 'cityscapes', 'cocostuff'])
def test_paper_param_counts(like):
    G, D = build_on_meta(oasis_config(like, 'paper'))
    assert (n_params(G), n_params(D)) == PAPER_PARAMS[like]


def test_model_info_cli_writes_reference_format(tmp_path, capsys):
    assert model_info_cli(['--like', 'ade20k', '--preset', 'paper', '--listing', str(tmp_path/'l.txt')]) == 0
    out = capsys.readouterr().out
    assert '74,314,691' in out and '22,258,904' in out
    assert parse_listing((tmp_path/'l.txt').read_text()) == parse_listing(REF.read_text())


def _official_layout_state(section):
    "A state_dict built only from the reference listing (shapes), standing in for an official *_G.pth / *_D.pth."
    st = {}
    for line in parse_listing(REF.read_text())[section]:
        k, shape = line.split('\t'); shape = eval(shape)
        st[k] = torch.tensor(3) if k.endswith('num_batches_tracked') else torch.randn(shape) * 0.01
        if k.endswith('running_var'): st[k] = st[k].abs() + 1
    return st


def test_official_layout_loads_strict_and_forward_is_deterministic(tmp_path):
    cfg = oasis_config('ade20k', 'paper')
    G, D = build_oasis(cfg)
    sg, sd = _official_layout_state('G'), _official_layout_state('D')
    torch.save(sg, tmp_path/'latest_EMA.pth'); torch.save({'module.' + k: v for k, v in sd.items()}, tmp_path/'latest_D.pth')
    load_oasis_state(G, tmp_path/'latest_EMA.pth'); load_oasis_state(D, tmp_path/'latest_D.pth')
    for k, v in sg.items(): assert torch.equal(G.state_dict()[k], v), k
    # 'quick'-sized forward of the same code path is deterministic given the noise (paper forward is too slow for CI)
    cq = oasis_config('ade20k', 'quick'); Gq, _ = build_oasis(cq); Gq.eval()
    lab, z = torch.randint(0, 151, (2, 32, 32)), torch.randn(2, cq.z_dim)
    with torch.no_grad(): assert torch.equal(Gq(lab, z), Gq(lab, z))


def test_checkpoint_for_other_classes_points_to_cat(tmp_path):
    G, D = build_oasis(oasis_config('ade20k', 'quick'))
    Gc, Dc = build_oasis(oasis_config('cocostuff', 'quick'))
    with pytest.raises(ValueError, match='CAT transfer'): load_oasis_state(Gc, G.state_dict())
    with pytest.raises(ValueError, match='another label set'): load_oasis_state(Dc, D.state_dict())
    (tmp_path/'bad.pth').write_bytes(b'\x00garbage')
    with pytest.raises(RuntimeError, match='corrupt'): load_oasis_state(G, tmp_path/'bad.pth')


def test_bad_inputs_to_G_and_D():
    G, D = build_oasis(oasis_config('ade20k', 'quick'))
    with pytest.raises(ValueError, match='151 label ids'): G(torch.randint(151, 160, (1, 32, 32)))
    with pytest.raises(ValueError, match='images'): G(torch.randint(0, 151, (1, 64, 64)))
    with pytest.raises(ValueError, match='noise must be'): G(torch.randint(0, 151, (1, 32, 32)), torch.randn(1, 7))
    with pytest.raises(ValueError, match='D expects'): D(torch.randn(1, 3, 20, 20))
    assert D(torch.randn(1, 3, 32, 64)).shape == (1, 152, 32, 64)   # fully convolutional: a source D on 1:2 target images


def test_spatial_noise_and_class_dependent_tensors():
    cfg = oasis_config('ade20k', 'quick'); G, D = build_oasis(cfg); G.eval()
    lab = torch.randint(0, 151, (1, 32, 32)); z0, z1 = torch.randn(1, cfg.z_dim), torch.randn(1, cfg.z_dim)
    mask = torch.zeros(1, 32, 32, dtype=torch.bool); mask[:, :, :16] = True
    with torch.no_grad():
        a, b = G(lab, region_noise(z0, z0, mask)), G(lab, region_noise(z0, z1, mask))
        assert torch.allclose(a, G(lab, z0), atol=1e-6)          # same z everywhere == broadcast z
        assert not torch.equal(a, b)
        ca, cb = G.condition(lab, region_noise(z0, z0, mask)), G.condition(lab, region_noise(z0, z1, mask))
        diff = (ca - cb).abs().sum(1)[0]                           # conditioning differs exactly inside the region
        assert torch.equal(diff > 0, mask[0])
    sd = G.state_dict()
    keys = G.class_dependent_keys()
    assert all(sd[k].shape[1] == cfg.cond_nc for k in keys)
    assert sum(v.ndim == 4 and v.shape[1] == cfg.cond_nc for v in sd.values()) == len(keys)
    assert [k for k, v in D.state_dict().items() if v.shape[0] == cfg.semantic_nc + 1] == D.class_dependent_keys()
    Gp, _ = build_on_meta(oasis_config('ade20k', 'paper'))
    assert len(Gp.class_dependent_keys()) == 17


def test_cond_transform_hook():
    cfg = oasis_config('ade20k', 'quick'); G, _ = build_oasis(cfg); G.eval()
    lab = torch.randint(0, 151, (1, 32, 32)); z = torch.randn(1, cfg.z_dim)
    with torch.no_grad():
        ref = G(lab, z)
        G.cond_transform = lambda y: y                     # identity affinity: same output
        assert torch.equal(G(lab, z), ref)
        G.cond_transform = lambda y: y.roll(1, dims=1)     # a class permutation changes it
        assert not torch.allclose(G(lab, z), ref)


def test_losses_follow_the_official_formulas():
    import torch.nn.functional as F
    from cat_nb.losses import class_balance_weights, n1_loss, labelmix_mask, labelmix_loss, d_loss
    lab = torch.randint(0, 6, (3, 8, 8)); N = 6
    onehot = F.one_hot(lab, N).permute(0, 3, 1, 2).float()
    # official get_class_balancing: reciprocal(count) * numel(onehot) / (N_present * C), don't-care 0
    occ = onehot.sum((0, 2, 3)); occ[0] = 0
    coef = torch.reciprocal(occ) * onehot.numel() / ((occ > 0).sum() * N); coef[0] = 0
    assert torch.allclose(class_balance_weights(lab, N), coef)
    logits = torch.randn(3, N + 1, 8, 8)
    tgt = torch.clamp(onehot.argmax(1) + N, min=N - 1) - N + 1          # official get_n1_target, real
    ce = F.cross_entropy(logits, tgt, reduction='none')
    assert torch.allclose(n1_loss(logits, lab, True), (ce * coef[onehot.argmax(1)]).mean())
    assert torch.allclose(n1_loss(logits, lab, False), F.cross_entropy(logits, torch.zeros_like(lab)))
    # LabelMix: one bit per class, the same in every image of the batch
    bits = torch.tensor([0, 1, 0, 1, 1, 0]); m = labelmix_mask(lab, bits)
    assert torch.equal(m[:, 0], bits[lab].float())
    a, b, c = torch.randn(3, 3, N + 1, 8, 8)
    assert torch.allclose(labelmix_loss(m, a, b, c), ((m * c + (1 - m) * b - a) ** 2).mean())
