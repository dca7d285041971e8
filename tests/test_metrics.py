"FID/KID/LPIPS/MS-SSIM/mIoU behave as they must, on real photos with the provisioned networks; the segmenter reports its mIoU."
import json, math, shutil, time
import pytest, torch

from cat_nb import metrics as M
from cat_nb import evaluation as E
from cat_nb.weights import real_photos


@pytest.fixture(scope='module')
def photos():
    x = real_photos(64, 8).float() / 127.5 - 1
    return torch.cat([x, x.flip(-1)])                    # 16 real images in [-1, 1]


def _noisy(x, s, seed=1):
    return (x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)


def test_fid_kid_self_zero_and_grow_with_noise(photos):
    f = M.inception_features(photos, progress=False)
    assert f.shape == (16, 2048) and f.dtype == torch.float64
    fn = [M.inception_features(_noisy(photos, s), progress=False) for s in (0.05, 0.2, 0.5)]
    fids = [M.fid_from_features(f, f)] + [M.fid_from_features(f, g) for g in fn]
    kids = [M.kid_from_features(f, g)[0] for g in [f] + fn]
    print('FID', fids, 'KID', kids)
    assert abs(fids[0]) < 1e-3
    assert fids[0] < fids[1] < fids[2] < fids[3]
    assert kids[0] < kids[1] < kids[2] < kids[3] and kids[3] > 0          # KID agrees in sign/direction with FID


@pytest.mark.slow
def test_fid_equals_torch_fidelity_on_inception_features(photos):
    "The fast FID equals torch-fidelity's own formula on real 2048-d features (its 2048x2048 eigensolve takes ~20 s)."
    f, g = M.inception_features(photos, progress=False), M.inception_features(_noisy(photos, .5), progress=False)
    fid, ref = M.fid_from_features(f, g), M.fid_torch_fidelity(f, g)
    assert math.isclose(fid, ref, rel_tol=1e-6), (fid, ref)


def test_lpips_and_msssim(photos):
    assert M.lpips_distance(photos, photos).abs().max() == 0
    l = [M.lpips_distance(photos, _noisy(photos, s)).mean().item() for s in (0.05, 0.2, 0.5)]
    assert l[0] < l[1] < l[2]
    assert torch.allclose(M.msssim(photos, photos), torch.ones(len(photos)), atol=1e-5)
    m = [M.msssim(photos, _noisy(photos, s)).mean().item() for s in (0.05, 0.2, 0.5)]
    assert m[0] > m[1] > m[2]
    d = M.pairwise_diversity(torch.stack([_noisy(photos[0], .3, k) for k in range(5)]))
    assert d['lpips'] > 0.01 and 0 < d['msssim'] < 1


def test_uint8_quantisation_is_shared():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.equal(M.to_uint8(x), M.to_uint8(M.to_uint8(x)))


def test_confusion_and_miou():
    cm = M.ConfusionMatrix(5, [1, 2, 3, 4])
    gt = torch.tensor([[1, 1, 2, 2], [3, 3, 0, 4]])
    r = cm.update(gt.clone(), gt).result()
    assert r['miou'] == 1 and r['n_classes'] == 4
    r = M.ConfusionMatrix(5, [1, 2, 3, 4]).update(torch.ones_like(gt), gt).result()
    assert r['per_class'][1] == pytest.approx(2 / 7) and r['per_class'][2] == 0


@pytest.fixture(scope='module')
def synth_city(tmp_path_factory):
    from cat_nb.synth import write_synth
    return write_synth(tmp_path_factory.mktemp('syn'), 'cityscapes', n_train=16, n_val=6, size=32, progress=False)


def test_segmenter_reports_val_miou(synth_city, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('CAT_NB_WEIGHTS', str(tmp_path/'w'))
    from cat_nb.segmenter import segmenter_cli, segmenter_for
    assert segmenter_cli(['--data', str(synth_city), '--like', 'cityscapes', '--preset', 'quick', '--size', '16', '--steps', '30']) == 0
    out = capsys.readouterr().out
    assert 'val mIoU' in out
    net = segmenter_for(synth_city, 'cityscapes', 16, 'quick', progress=False, steps=30)   # cached: same net, no retraining
    assert 0 <= net.val['miou'] <= 1 and net.val['n_val'] == 6 and len(net.val['per_class']) == 19
    logits = net.predict_logits(torch.zeros(2, 3, 16, 32))
    assert logits.shape == (2, 35, 16, 32)


def test_evaluate_cli_end_to_end(synth_city, tmp_path, monkeypatch):
    "A quick OASIS run evaluated with all five metrics; the JSON (default RUN/evaluate_<metrics>.json) has them all, plus the segmenter's real-image mIoU."
    monkeypatch.setenv('CAT_NB_WEIGHTS', str(tmp_path/'w'))
    from cat_nb.train import train_config, train_source
    cfg = train_config('cityscapes', 'quick', iters=2, ckpt_every=2, sample_every=2)
    train_source(synth_city, cfg, tmp_path/'run', device='cpu', progress=False)
    assert E.evaluate_cli(['--run', str(tmp_path/'run'), '--data', str(synth_city), '--metrics', 'fid,kid,miou,lpips,msssim',
                           '--seg-preset', 'quick', '--n-div', '3', '--div-maps', '2', '--device', 'cpu', '--no-progress']) == 0
    r = json.loads((tmp_path/'run'/'evaluate_fid-kid-miou-lpips-msssim.json').read_text())
    for k in ('fid', 'kid', 'miou', 'miou_real', 'lpips', 'msssim', 'per_class_iou', 'protocol'): assert k in r, k
    assert r['fid'] > 0 and 0 <= r['miou'] <= 1 and 0 <= r['miou_real'] <= 1 and r['n_val'] == 6 and r['kind'] == 'source'
    with pytest.raises(SystemExit): E.evaluate_cli(['--run', str(tmp_path/'run'), '--data', str(synth_city), '--metrics', 'fid,isc'])
    with pytest.raises(SystemExit): E.evaluate_cli(['--run', str(tmp_path/'run'), '--metrics', 'fid'])      # source runs record no data root


@pytest.fixture(scope='module')
def transfer_run(tmp_path_factory):
    "A tiny CAT transfer run: 2-iteration SynthScenes-ADE20K source, 2 iterations of CAT to SynthScenes-Cityscapes (as tests/test_transfer.py)."
    from cat_nb.synth import write_synth
    from cat_nb.train import train_source, train_config
    from cat_nb.transfer import transfer, transfer_config, resolve_affinity
    d = tmp_path_factory.mktemp('tr')
    write_synth(d/'ade', 'ade20k', 8, 4, 32, progress=False); write_synth(d/'cs', 'cityscapes', 8, 6, 32, progress=False)
    train_source(d/'ade', train_config('ade20k', 'quick', iters=2, ckpt_every=2, sample_every=2), d/'src', 'cpu', progress=False)
    src_model = json.loads((d/'src'/'config.json').read_text())['model']
    cfg = transfer_config('cat', 'cityscapes', src_model, iters=2, stage1_iters=1, ckpt_every=2, sample_every=2, log_every=2)
    transfer(d/'cs', cfg, d/'cat', d/'src', resolve_affinity('cityscapes', 'ade20k', method='synth-gt')[0], device='cpu', progress=False)
    return d


def test_evaluate_cli_transfer_run(transfer_run, tmp_path, monkeypatch, capsys):
    "`cat-nb evaluate` on a transfer run folder: the CAT generator (target ids) with FID, KID and mIoU of a quick segmenter."
    monkeypatch.setenv('CAT_NB_HOME', str(tmp_path))
    d = transfer_run
    assert E.run_kind(d/'cat') == 'transfer' and E.run_kind(d/'src') == 'source'
    out = tmp_path/'e.json'
    assert E.evaluate_cli(['--run', str(d/'cat'), '--data', str(d/'cs'), '--metrics', 'fid,kid,miou', '--seg-preset', 'quick',
                           '--device', 'cpu', '--out', str(out), '--no-progress']) == 0
    r = json.loads(out.read_text())
    assert (r['kind'], r['method'], r['like'], r['n_val'], r['source_like']) == ('transfer', 'cat', 'cityscapes', 6, 'ade20k')
    assert r['fid'] > 0 and math.isfinite(r['kid']) and 0 <= r['miou'] <= 1 and 0 <= r['miou_real'] <= 1
    assert len(r['per_class_iou']) == 19 and r['inception_impl'] in ('fast', 'torch-fidelity')
    # the evaluated generator is the run's: same FID from the library call on the loaded generator
    from cat_nb.transfer import load_transfer
    from cat_nb.data import SegDataset
    G, cfg = load_transfer(d/'cat', 'cpu')
    val = SegDataset(d/'cs', 'cityscapes', 'val', size=cfg.train.model.image_hw[0], train=False)
    again = M.evaluate(M.oasis_generate_fn(G, 'cpu'), val, ('fid',), device='cpu', progress=False)
    assert math.isclose(again['fid'], r['fid'], rel_tol=1e-6)
    # without --data: the target root the transfer run recorded (run.json) ...
    assert E.recorded_data_root(d/'cat') == str((d/'cs').resolve())
    assert E.evaluate_cli(['--run', str(d/'cat'), '--metrics', 'fid', '--device', 'cpu', '--no-progress']) == 0
    r2 = json.loads((d/'cat'/'evaluate_fid.json').read_text())
    assert r2['data'] == str((d/'cs').resolve()) and math.isclose(r2['fid'], r['fid'], rel_tol=1e-6)
    # ... and a clear error when the run records none
    shutil.copytree(d/'cat', tmp_path/'norecord'); (tmp_path/'norecord'/'run.json').unlink()
    with pytest.raises(SystemExit): E.evaluate_cli(['--run', str(tmp_path/'norecord'), '--metrics', 'fid'])
    assert '--data is required' in capsys.readouterr().err


def test_fast_inception_matches_torch_fidelity(photos):
    "The rebuilt CPU network gives torch-fidelity's features (required: max |diff| <= 1e-3) on photos and SynthScenes-like images."
    fast, plain = M.inception('cpu', 'fast'), M.inception('cpu', 'torch-fidelity')
    assert (fast.impl, plain.impl) == ('fast', 'torch-fidelity')
    x = torch.cat([M.to_uint8(photos), M.check_images(4)])
    d = M.feature_difference(fast, plain, x)
    print('max |fast - torch-fidelity|', d)
    assert d <= 1e-3
    with pytest.raises(ValueError, match='unknown inception impl'): M.inception('cpu', 'bf16')


def test_fast_inception_falls_back_to_torch_fidelity(monkeypatch):
    "When the rebuilt network cannot be built (or fails its self-check) on a build, inception() warns and uses torch-fidelity's module."
    def broken(fe): raise RuntimeError('not on this build')
    monkeypatch.setattr(M, 'FastInceptionV3', broken)
    M.inception.cache_clear()
    try:
        with pytest.warns(UserWarning, match='FastInceptionV3 unavailable'): m = M.inception('cpu', 'fast')
        assert m.impl == 'torch-fidelity'
        f = M.inception_features(M.check_images(2), device='cpu', progress=False, impl='fast')
        assert f.shape == (2, 2048) and torch.isfinite(f).all()
    finally: M.inception.cache_clear()


def test_kid_equals_torch_fidelity():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 128, generator=g, dtype=torch.float64), torch.randn(150, 128, generator=g, dtype=torch.float64) + .05
    for m in (1000, 60):
        k, kt = M.kid_from_features(a, b, subset_size=m), M.kid_torch_fidelity(a, b, subset_size=m)
        assert math.isclose(k[0], kt[0], rel_tol=1e-9) and math.isclose(k[1], kt[1], rel_tol=1e-6, abs_tol=1e-12)


def test_reference_features_cached(synth_city, tmp_path, monkeypatch):
    monkeypatch.setenv('CAT_NB_HOME', str(tmp_path))
    from cat_nb.data import SegDataset
    val = SegDataset(synth_city, 'cityscapes', 'val', size=16, train=False)
    a = M.reference_features(val, progress=False)
    files = list((tmp_path/'cache'/'fid_ref').glob('cityscapes_val_16x32_*.pt'))
    assert len(files) == 1 and a.shape == (6, 2048)
    t0 = time.time(); b = M.reference_features(val, progress=False)
    assert torch.equal(a, b) and time.time() - t0 < 2


@pytest.mark.slow
def test_standard_segmenter_on_synthscenes(tmp_path, monkeypatch):
    "The `standard` evaluation segmenter on SynthScenes-ADE20K (1000 train / 200 val, 64x64): its real-image val mIoU (~0.5 when measured)."
    monkeypatch.setenv('CAT_NB_WEIGHTS', str(tmp_path/'w'))
    from cat_nb.synth import write_synth
    from cat_nb.segmenter import segmenter_for
    root = write_synth(tmp_path/'ade', 'ade20k', 1000, 200, 64, progress=False)
    net = segmenter_for(root, 'ade20k', 64, 'standard', progress=False)
    print('standard segmenter val mIoU', net.val['miou'], 'pixel acc', net.val['pixel_acc'])
    assert net.val['miou'] > 0.35 and net.val['pixel_acc'] > 0.75
