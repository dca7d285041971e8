"The standard source models that ship in cat_nb/pretrained/: manifest, checksums, strict loading, generation, and that the pipeline installs them."
import json, os
from pathlib import Path
import pytest, torch
from cat_nb.core import to_jsonable
from cat_nb.oasis import oasis_config, build_oasis, load_oasis_state
from cat_nb.train import train_config
from cat_nb.shipped import SHIPPED_DIR, shipped_manifest, load_shipped
from cat_nb.weights import sha256_file

LIKES = ('ade20k', 'cocostuff')
REQUIRED = ('file', 'sha256', 'bytes', 'iterations', 'commands', 'revision', 'cpu_hours', 'fid_ema', 'kid_ema', 'fid_g',
            'fid_ema_fp16', 'other_val', 'curve', 'train_config', 'model')


@pytest.fixture(scope='module')
def manifest(): return shipped_manifest(SHIPPED_DIR)


@pytest.mark.parametrize('like', LIKES)
def test_manifest_entry(manifest, like):
    e = manifest['models'][f'{like}_standard']
    assert not [k for k in REQUIRED if k not in e], f'manifest entry lacks {[k for k in REQUIRED if k not in e]}'
    p = SHIPPED_DIR/e['file']
    assert p.stat().st_size == e['bytes'] and sha256_file(p) == e['sha256']
    assert any('train-source' in c for c in e['commands']) and len(e['revision']) == 40 and e['dirty'] is False
    assert e['iterations'] == e['train_config']['iters'] == e['curve'][-1]['step']
    # the model the code's standard recipe trains: otherwise the pipeline would not install it (and would train instead)
    assert e['train_config'] == json.loads(json.dumps(to_jsonable(train_config(like, 'standard'))))
    assert e['model'] == to_jsonable(oasis_config(like, 'standard'))


def test_size_budget(manifest):
    total = sum(manifest['models'][f'{l}_standard']['bytes'] for l in LIKES)
    assert total <= 40 * 2**20, f'shipped OASIS sources take {total / 2**20:.1f} MiB, over the 40 MiB budget'


@pytest.mark.parametrize('like', LIKES)
def test_load_strict_and_generate(like):
    st = load_shipped(like, 'standard')
    G, D = build_oasis(oasis_config(like, 'standard'))
    load_oasis_state(G, st['EMA'], 'EMA'); load_oasis_state(D, st['D'], 'D')           # strict: every key and shape
    lab = torch.zeros(4, 64, 64, dtype=torch.long); lab[:, :32] = 1; lab[:, 32:] = 2      # two classes, top and bottom
    with torch.no_grad():
        x = G.eval()(lab, torch.randn(4, G.cfg.z_dim, generator=torch.Generator().manual_seed(0)))
        d = D.eval()(x)
    assert x.shape == (4, 3, 64, 64) and torch.isfinite(x).all()
    assert (x[:, :, :32].mean((0, 2, 3)) - x[:, :, 32:].mean((0, 2, 3))).abs().max() > 0.05   # the label map shows in the image
    assert d.shape == (4, G.cfg.semantic_nc + 1, 64, 64) and torch.isfinite(d).all()


def test_damaged_file_refused(tmp_path):
    for f in SHIPPED_DIR.iterdir(): (tmp_path/f.name).write_bytes(f.read_bytes())
    e = shipped_manifest(tmp_path)['models']['ade20k_standard']
    b = bytearray((tmp_path/e['file']).read_bytes()); b[-100] ^= 0xFF; (tmp_path/e['file']).write_bytes(bytes(b))
    with pytest.raises(ValueError, match='does not match its manifest'): load_shipped('ade20k', 'standard', tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize('like', LIKES)
def test_fid_as_recorded(like, manifest):
    "The shipped EMA's FID on the 200 val maps, recomputed now, is the manifest's (fp16 form; same protocol)."
    from cat_nb.pipeline import synth_data
    from cat_nb.data import SegDataset
    from cat_nb.metrics import evaluate, oasis_generate_fn
    e = manifest['models'][f'{like}_standard']; st = load_shipped(like, 'standard')
    G, _ = build_oasis(oasis_config(like, 'standard')); load_oasis_state(G, st['EMA'], 'EMA')
    val = SegDataset(synth_data(like, 'standard'), like, 'val', size=64, train=False)
    r = evaluate(oasis_generate_fn(G, 'cpu'), val, metrics=('fid',), device='cpu', progress=False)
    assert abs(r['fid'] - e['fid_ema_fp16']) < 0.5, (r['fid'], e['fid_ema_fp16'])
    assert r['fid'] <= 150


@pytest.mark.parametrize('like', LIKES)
def test_pipeline_installs_the_shipped_model(like, tmp_path, monkeypatch):
    "At `standard` the pipeline's source model is the shipped one (no training): same recipe, default data, the pipeline's seed."
    from cat_nb.pipeline import source_run, source_dir, synth_data, shipped_source
    from cat_nb.train import read_source_checkpoint
    monkeypatch.delenv('CAT_NB_SOURCES', raising=False)
    monkeypatch.setenv('CAT_NB_PIPELINE', str(tmp_path))
    assert shipped_source(like, 'standard', synth_data(like, 'standard'), train_config(like, 'standard', seed=0)) is not None
    run = source_run(like, 'standard')
    done = json.loads((run/'done.json').read_text())
    assert done['shipped'] == f'{like}_standard.pt' and done['step'] == 5000
    st, _ = read_source_checkpoint(run)
    assert st['step'] == 5000 and all(torch.equal(st['G'][k], st['EMA'][k]) for k in st['G'])
    monkeypatch.setenv('CAT_NB_SOURCES', 'train')
    assert source_dir(like, 'standard')[0] != run        # --retrain-sources: another folder, nothing mixed
