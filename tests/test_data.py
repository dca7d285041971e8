"""Datasets: id conventions, readers on every official layout, bad-input errors, the few-shot sampler, data_scripts."""
import importlib.util, json, sys, zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cat_nb.data import (LIKES, CITYSCAPES_EVAL_IDS, DatasetError, SegDataset, check_dataset, class_names, class_table,
                         decode_label, encode_label, label_histograms, list_pairs, num_ids, out_hw, split_dirs)
from cat_nb.subset import greedy_kl_subset, kl_to_uniform, sample_subset, subset_cli
from cat_nb.synth import write_synth

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp('synth')
    for like in LIKES: write_synth(d/like, like, n_train=40, n_val=4, size=32, seed=1, progress=False)
    return d


# --- id conventions -------------------------------------------------------------------------------------------
def test_num_ids_and_names():
    assert [num_ids(l) for l in LIKES] == [151, 183, 35]
    assert all(len(class_names(l)) == num_ids(l) for l in LIKES)
    ade, coco, cs = (class_names(l) for l in LIKES)
    assert ade[0] == 'other' and ade[1] == 'wall' and ade[3] == 'sky' and ade[150] == 'flag'
    assert coco[0] == 'unlabeled' and coco[1] == 'person' and coco[91] == 'hair brush' and coco[92] == 'banner' and coco[182] == 'wood'
    assert cs[0] == 'unlabeled' and cs[7] == 'road' and cs[33] == 'bicycle'
    assert [cs[i] for i in CITYSCAPES_EVAL_IDS][:3] == ['road', 'sidewalk', 'building'] and len(CITYSCAPES_EVAL_IDS) == 19
    assert len({r['name'] for r in class_table('cocostuff')}) == 183


def test_cocostuff_png_convention_matches_oasis():
    # OASIS: label = png + 1; 256 -> 0 (png 255 = unlabeled)
    v = np.array([[0, 1, 181, 255]])
    assert decode_label(v, 'cocostuff').tolist() == [[1, 2, 182, 0]]
    ids = np.arange(183).reshape(1, -1)
    assert (decode_label(encode_label(ids, 'cocostuff'), 'cocostuff') == ids).all()
    for like in ('ade20k', 'cityscapes'):
        ids = np.arange(num_ids(like) - (like == 'cityscapes')).reshape(1, -1)
        assert (encode_label(ids, like) == ids).all()


def test_out_of_range_values_rejected():
    for like, bad in (('ade20k', 151), ('cocostuff', 182), ('cityscapes', 34)):
        with pytest.raises(DatasetError, match='outside'): decode_label(np.array([[bad]]), like, 'f.png')
    with pytest.raises(ValueError): encode_label(np.array([[183]]), 'cocostuff')


# --- readers ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('like', LIKES)
def test_segdataset_on_official_layouts(synth, like):
    root = synth/like
    img_dir, lbl_dir = split_dirs(root, like, 'train')
    suffix = {'ade20k': '.jpg', 'cocostuff': '.jpg', 'cityscapes': '_leftImg8bit.png'}[like]
    assert any(p.name.endswith(suffix) for p in img_dir.rglob('*'))
    for train in (True, False):
        ds = SegDataset(root, like, 'train', size=24, train=train)
        assert len(ds) == 40
        it = ds[3]
        H, W = out_hw(like, 24)
        assert it['image'].shape == (3, H, W) and it['image'].dtype == torch.float32
        assert it['label'].shape == (H, W) and it['label'].dtype == torch.int64
        assert -1.0 <= it['image'].min() < it['image'].max() <= 1.0
        assert it['label'].max() < num_ids(like)
    ev = SegDataset(root, like, 'val', size=24, train=False)
    a, b = ev[0], ev[0]
    assert torch.equal(a['image'], b['image']) and torch.equal(a['label'], b['label'])  # eval: no randomness


def test_cityscapes_aspect_and_train_crop(synth):
    ds = SegDataset(synth/'cityscapes', 'cityscapes', size=16)
    assert ds[0]['image'].shape == (3, 16, 32)
    ds = SegDataset(synth/'ade20k', 'ade20k', size=16, train=True)
    assert ds[0]['image'].shape == (3, 16, 16)


def test_labels_survive_resizing(synth):
    # nearest-neighbour labels: no new ids appear
    ds = SegDataset(synth/'cocostuff', 'cocostuff', size=20, train=False)
    _, raw = ds.load(0)
    assert set(ds[0]['label'].unique().tolist()) <= set(np.unique(raw).tolist())


# --- bad input --------------------------------------------------------------------------------------------------
def _copy(src, dst):
    import shutil; shutil.copytree(src, dst); return dst


def test_missing_dataset_names_script(tmp_path):
    for like in LIKES:
        with pytest.raises(DatasetError, match=f'data_scripts/{like}.py'): SegDataset(tmp_path/'none', like)


def test_missing_label_and_missing_image(synth, tmp_path):
    r = _copy(synth/'ade20k', tmp_path/'a')
    ip, lp, _ = list_pairs(r, 'ade20k')[0]
    lp.unlink()
    with pytest.raises(DatasetError, match='image has no label map') as e: SegDataset(r, 'ade20k')
    assert ip.name in str(e.value)
    r = _copy(synth/'cityscapes', tmp_path/'c')
    ip, lp, _ = list_pairs(r, 'cityscapes')[0]
    ip.unlink()
    with pytest.raises(DatasetError, match='label map has no image') as e: SegDataset(r, 'cityscapes')
    assert lp.name in str(e.value)


def test_size_mismatch_corrupt_and_range(synth, tmp_path):
    r = _copy(synth/'cocostuff', tmp_path/'c')
    (ip, lp, _), (ip2, lp2, _), (ip3, lp3, _) = list_pairs(r, 'cocostuff')[:3]
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(lp)
    with pytest.raises(DatasetError, match='but its label map'): SegDataset(r, 'cocostuff').load(0)
    ip2.write_bytes(b'\xff\xd8 truncated')
    with pytest.raises(DatasetError, match=f'{ip2.name}: corrupt'): SegDataset(r, 'cocostuff').load(1)
    Image.fromarray(np.full((32, 32), 200, np.uint8)).save(lp3)
    with pytest.raises(DatasetError, match=r'label value\(s\) \[200\]'): SegDataset(r, 'cocostuff').load(2)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(lp3)
    with pytest.raises(DatasetError, match='one-channel'): SegDataset(r, 'cocostuff').load(2)
    with pytest.raises(DatasetError): check_dataset(r, 'cocostuff', progress=False)


# --- subset sampler ---------------------------------------------------------------------------------------------
def test_sampler_beats_random_subsets(synth):
    names, H = label_histograms(synth/'ade20k', 'ade20k', progress=False)
    classes = np.flatnonzero(H.sum(0)); classes = classes[classes != 0]
    rng = np.random.default_rng(0)
    for n in (5, 10, 20):
        idx = greedy_kl_subset(H, n, seed=0)
        kl = kl_to_uniform(H[idx].sum(0), classes)
        rand = [kl_to_uniform(H[rng.choice(len(H), n, replace=False)].sum(0), classes) for _ in range(50)]
        assert kl < np.mean(rand) and kl <= min(rand), (n, kl, min(rand))


def test_sampler_deterministic_and_nested(synth):
    _, H = label_histograms(synth/'cityscapes', 'cityscapes', progress=False)
    a, b = greedy_kl_subset(H, 20, seed=3), greedy_kl_subset(H, 20, seed=3)
    assert a == b and len(set(a)) == 20
    assert greedy_kl_subset(H, 10, seed=3) == a[:10]
    assert greedy_kl_subset(H, 20, seed=4) != a


def test_subset_cli_writes_a_readable_subset(synth, tmp_path):
    out = tmp_path/'s.json'
    assert subset_cli(['--data', str(synth/'cocostuff'), '--like', 'cocostuff', '--n', '10', '--seed', '0', '--out', str(out)]) == 0
    rep = json.loads(out.read_text())
    assert len(rep['names']) == 10 and rep['kl'] < rep['kl_random_mean']
    ds = SegDataset(synth/'cocostuff', 'cocostuff', subset=out, size=16)
    assert ds.names == rep['names']
    with pytest.raises(SystemExit): subset_cli(['--data', str(synth/'cocostuff'), '--like', 'cocostuff', '--n', '999', '--out', str(out)])


# --- data_scripts: prepare + check on archives in the official layout ------------------------------------------
def _script(name):
    spec = importlib.util.spec_from_file_location(f'ds_{name}', ROOT/'data_scripts'/f'{name}.py')
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m


def _zip(zpath, base, files, arc_prefix=''):
    with zipfile.ZipFile(zpath, 'w') as z:
        for f in files: z.write(f, arc_prefix + f.relative_to(base).as_posix())


def test_ade20k_script_extracts_and_checks(synth, tmp_path):
    src = synth/'ade20k'
    _zip(tmp_path/'ADEChallengeData2016.zip', src, [p for p in src.rglob('*') if p.is_file() and p.name != 'concepts.json'])
    assert _script('ade20k').main(['--root', str(tmp_path), '--skip-download']) == 0
    assert len(SegDataset(tmp_path, 'ade20k', 'val', size=16)) == 4


def test_cocostuff_script_extracts_and_checks(synth, tmp_path):
    src = synth/'cocostuff'
    for s in ('train2017', 'val2017'): _zip(tmp_path/f'{s}.zip', src, list((src/s).glob('*.jpg')))
    lab = src/'stuffthingmaps_trainval2017'
    _zip(tmp_path/'stuffthingmaps_trainval2017.zip', lab, list(lab.rglob('*.png')))
    assert _script('cocostuff').main(['--root', str(tmp_path), '--skip-download']) == 0
    assert len(SegDataset(tmp_path, 'cocostuff', 'train', size=16)) == 40


def test_cityscapes_script_explains_login_then_checks(synth, tmp_path, capsys):
    m = _script('cityscapes')
    with pytest.raises(SystemExit, match='cityscapes-dataset.com'): m.main(['--root', str(tmp_path)])
    src = synth/'cityscapes'
    _zip(tmp_path/'gtFine_trainvaltest.zip', src, list((src/'gtFine').rglob('*.png')))
    _zip(tmp_path/'leftImg8bit_trainvaltest.zip', src, list((src/'leftImg8bit').rglob('*.png')))
    assert m.main(['--root', str(tmp_path)]) == 0
    assert 'cityscapes train: 40 image/label pairs' in capsys.readouterr().out
    (next((tmp_path/'gtFine'/'train').rglob('*.png'))).unlink()
    assert m.main(['--root', str(tmp_path), '--check-only']) == 1
