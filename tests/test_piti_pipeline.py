"""PITI through the pipeline, as the `table5` report runs it: PITI specs build their own source model, get their own run folders,
are evaluated (FID/KID/mIoU) and cached; the baselines move what PITI_METHODS says."""
import pytest
import torch


@pytest.fixture
def quick_home(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv('CAT_NB_PIPELINE', str(tmp_path/'pipeline')); monkeypatch.setenv('CAT_NB_HOME', str(tmp_path/'home'))
    return tmp_path


def test_piti_specs_run_through_the_pipeline(quick_home):
    from cat_nb.pipeline import RunSpec, run_plan, run_dir, _done
    specs = [RunSpec('ade20k', 'cocostuff', 'cat', 'text', training_free=True, n_images=4, backbone='piti'),
             RunSpec('ade20k', 'cocostuff', 'fixdec', n_images=4, backbone='piti')]
    df = run_plan(specs, 'quick', device='cpu', workers=1, progress=False)
    assert list(df.backbone) == ['piti', 'piti'] and list(df.method) == ['cat', 'fixdec']
    assert list(df.affinity) == ['text', 'none'] and list(df.iters) == [0, 4]
    assert df.fid.gt(0).all() and df.miou.between(0, 1).all()
    dirs = [run_dir(s, 'quick', device='cpu') for s in specs]
    assert all(d.name.startswith('piti_ade20k2cocostuff_') and _done(d) for d in dirs)
    assert not (dirs[1]/'affinity_init.npy').exists() and (dirs[0]/'affinity_init.npy').exists()   # fixdec has no affinity layer
    oasis = run_dir(RunSpec('ade20k', 'cocostuff', 'cat', 'text', training_free=True, n_images=4), 'quick', device='cpu')
    assert oasis != dirs[0]                                                  # same fields, other backbone: another run
    again = run_plan(specs, 'quick', device='cpu', workers=1, progress=False)  # cached: read, not retrained
    assert again.fid.tolist() == df.fid.tolist()


def test_piti_specs_reject_oasis_switches_and_unknown_methods():
    from cat_nb.pipeline import RunSpec
    with pytest.raises(ValueError, match='OASIS switches'): RunSpec('ade20k', 'cocostuff', 'cat', freeze_d=True, backbone='piti')
    with pytest.raises(ValueError, match='unknown PITI method'): RunSpec('ade20k', 'cocostuff', 'freezed', backbone='piti')
    with pytest.raises(ValueError, match='no affinity layer'): RunSpec('ade20k', 'cocostuff', 'fixdec', 'text', backbone='piti')
    with pytest.raises(ValueError, match='unknown backbone'): RunSpec('ade20k', 'cocostuff', 'cat', backbone='sd')
    assert RunSpec('ade20k', 'cocostuff', 'cat-random', backbone='piti').affinity == 'random'


def test_piti_cascade_trains_and_evaluates_both_stages(quick_home, monkeypatch):
    """At a `PITI_CASCADE` preset (the paper; here quick, patched in) a PITI spec is two CAT-PITI runs, on the base and the
    upsampler source, evaluated as PITI's cascade: the base samples refined by the upsampler, one per val map."""
    import json
    import cat_nb.pipeline as pl
    monkeypatch.setattr(pl, 'PITI_CASCADE', ('quick',))
    spec = pl.RunSpec('ade20k', 'cocostuff', 'cat', 'text', n_images=4, backbone='piti')
    df = pl.run_plan([spec], 'quick', device='cpu', workers=1, progress=False)
    base = pl.run_dir(spec, 'quick', device='cpu'); done = pl._done(base)
    up = pl.Path(done['upsampler'])
    assert up.name.startswith('piti_up_ade20k2cocostuff_cat_text_quick_') and pl._done(up)['stage'] == 'upsample'
    assert pl.RunDir(up).config['train']['model']['kind'] == 'upsample' and pl.RunDir(base).config['train']['model']['kind'] == 'base'
    assert pl.RunDir(up).config['source_model']['kind'] == 'upsample'
    key = json.loads((base/'pipeline_eval.json').read_text())['key']
    assert key['upsampler'][0] == up.name and df.fid.gt(0).all() and df.miou.between(0, 1).all()
    assert pl._done(pl.piti_source_dir('ade20k', 'quick', kind='upsample')[0]) is not None      # built with the shared artefacts
    again = pl.run_plan([spec], 'quick', device='cpu', workers=1, progress=False)                  # cached: read, not retrained
    assert again.fid.tolist() == df.fid.tolist()
