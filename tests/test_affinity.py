"""Class affinity estimation (issue 4): container, normalization, vote, text, vision, CLI."""
import json, time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cat_nb.affinity_cli import affinity_cli
from cat_nb.affinity import (Affinity, gt_from_matrix, majority_vote, make_affinity, normalize_counts, plot_affinity,
                             random_affinity, similarity_to_affinity, soft_average, source_columns, top1_agreement, top_table)
from cat_nb.affinity_vision import Prototypes, confusion_counts, load_backbone, patch_fractions, prototype_similarity, segmentation_affinity


def _aff(top, ct=4, cs=3, empty=(), method='m'):
    return Affinity(np.eye(cs)[top], [f't{i}' for i in range(ct)], [f's{i}' for i in range(cs)], dict(method=method, empty_rows=list(empty)))


def test_container_roundtrip_and_validation(tmp_path):
    a = random_affinity('cityscapes', 'ade20k', seed=5)
    assert a.shape == (35, 151) and np.allclose(a.A.sum(1), 1)
    a.save(tmp_path/'a.npy'); b = Affinity.load(tmp_path/'a.npy')
    assert np.array_equal(a.A, b.A) and b.target_names[7] == 'road' and b.meta['seed'] == 5
    side = json.loads((tmp_path/'a.json').read_text())
    assert side['source_names'][1] == 'wall' and 'git' in side
    with pytest.raises(ValueError, match='sum to 1'): Affinity(np.ones((2, 2)), ['a', 'b'], ['x', 'y'])
    with pytest.raises(ValueError, match='does not match'): Affinity(np.eye(2), ['a'], ['x', 'y'])
    with pytest.raises(FileNotFoundError, match='sidecar'):
        np.save(tmp_path/'lonely.npy', np.eye(2)); Affinity.load(tmp_path/'lonely.npy')


def test_random_is_seeded_and_leaves_global_rng():
    torch.manual_seed(0); np.random.seed(0); x0 = np.random.rand()
    np.random.seed(0)
    a, b = random_affinity('ade20k', 'cocostuff', seed=1), random_affinity('ade20k', 'cocostuff', seed=1)
    assert np.array_equal(a.A, b.A) and not np.array_equal(a.A, random_affinity('ade20k', 'cocostuff', seed=2).A)
    assert np.random.rand() == x0


def test_empty_rows_never_nan():
    A, e = normalize_counts(np.zeros((3, 4)))
    assert np.isfinite(A).all() and e.all() and np.allclose(A, .25)
    A, e = similarity_to_affinity(np.full((2, 3), np.nan), norm='softmax')
    assert np.isfinite(A).all() and e.all()
    aff = make_affinity(np.zeros((151, 183)), 'counts', 'ade20k', 'cocostuff', 'segmentation')
    assert np.isfinite(aff.A).all() and len(aff.meta['empty_rows']) == 150 and aff.A[0, 0] == 1  # row 0 pinned to don't-care
    assert aff.A[1:, ~source_columns('cocostuff')].sum() == 0  # unused COCO ids never get mass
    fb = random_affinity('ade20k', 'cocostuff', seed=0)
    aff2 = make_affinity(np.zeros((151, 183)), 'counts', 'ade20k', 'cocostuff', 'segmentation', empty=fb)
    assert np.allclose(aff2.A[5], fb.A[5])


def test_normalization_choices():
    S = np.array([[0.8, 0.5, 0.1, -0.3]])
    clip, _ = similarity_to_affinity(S, norm='clip')
    assert np.isclose(clip[0, 3], 0) and np.isclose(clip[0, 0], 0.8 / 1.4)
    sharp, _ = similarity_to_affinity(S, temperature=0.01); soft, _ = similarity_to_affinity(S, temperature=1.0)
    assert sharp[0, 0] > 0.99 and soft[0, 0] < 0.5 and soft.argmax() == sharp.argmax() == clip.argmax() == 0
    with pytest.raises(ValueError, match='temperature'): similarity_to_affinity(S, temperature=0)


def test_majority_vote_rules():
    affs = {'text': _aff([0, 1, 2, 2]), 'segmentation': _aff([0, 1, 1, 0], empty=[3]), 'features': _aff([0, 2, 0, 1])}
    fid = {'text': 44.6, 'segmentation': 47.0, 'features': 45.5}
    c = majority_vote(affs, fid)
    assert list(c.top1()) == [0, 1, 2, 2] and set(np.unique(c.A)) == {0., 1.}
    # row 2: three different answers -> the lowest-FID method (text); row 3: segmentation has no pixels (no vote),
    # text and features disagree -> text, the lower FID of the two (44.6 < 45.5)
    assert c.meta['decided_by'][2] == 'fid:text' and c.meta['decided_by'][3] == 'fid:text' and c.meta['decided_by'][1] == 'vote:2/3'
    c2 = majority_vote(affs, {'text': 50, 'segmentation': 47.0, 'features': 45.5})
    assert c2.top1()[2] == 0 and c2.top1()[3] == 1  # now features decides both
    with pytest.raises(ValueError, match='FID missing'): majority_vote(affs, {'text': 1})
    with pytest.raises(ValueError, match='same target'): majority_vote({'a': _aff([0, 1, 2, 0]), 'b': _aff([0, 1], ct=2)}, {'a': 1, 'b': 2})
    s = soft_average(affs)
    assert np.allclose(s.A.sum(1), 1) and np.allclose(s.A[3], [0, .5, .5])  # the empty segmentation row is left out


def test_evaluation_table_and_heatmap(tmp_path):
    G = np.zeros((4, 3)); G[1, 1] = 1; G[2, [1, 2]] = .5; G[3, 0] = .2
    gt = gt_from_matrix(G)
    assert gt == {1: {1}, 2: {1, 2}, 3: {0}}
    a = _aff([0, 1, 2, 1])
    r = top1_agreement(a, gt)
    assert r['n'] == 3 and r['n_correct'] == 2 and np.isclose(r['agreement'], 2 / 3)
    t = top_table(a, k=3, gt=gt)
    assert list(t.columns[:4]) == ['target', 'top1', 'top2', 'top3'] and t.loc[2, 'ok']
    p = tmp_path/'h.png'; plot_affinity(a, gt=gt, path=p)
    assert p.exists() and p.stat().st_size > 2000


class _Oracle:
    name = 'oracle'
    def __init__(self, mapping, cs): self.m, self.cs = torch.tensor(mapping), cs
    def __call__(self, x):  # the true target id is stored in channel 0; predict its mapped source class at half resolution
        y = ((x[:, 0] + 1) * 10).round().long()
        return F.avg_pool2d(F.one_hot(self.m[y], self.cs).permute(0, 3, 1, 2).float(), 2)


def _toy_batches(n=4, H=16, W=16, ids=(1, 2, 3), seed=0):
    g = torch.Generator().manual_seed(seed); y = torch.tensor(ids)[torch.randint(0, len(ids), (n, H // 2, W // 2), generator=g)]
    y = y.repeat_interleave(2, 1).repeat_interleave(2, 2)
    x = torch.zeros(n, 3, H, W); x[:, 0] = y / 10 - 1
    return [{'image': x, 'label': y}]


def test_segmentation_confusion_is_eq1():
    C = confusion_counts(_Oracle([0, 3, 1, 2, 0], 4), _toy_batches(), 5, 4, progress=False)
    assert C.sum() == 4 * 16 * 16 and C[4].sum() == 0
    assert (C[1, 3], C[2, 1], C[3, 2]) == (C[1].sum(), C[2].sum(), C[3].sum())
    with pytest.raises(ValueError, match='C_S=6'): confusion_counts(_Oracle([0, 3, 1, 2, 0], 4), _toy_batches(), 5, 6, progress=False)
    bad = _toy_batches(); bad[0]['label'] = bad[0]['label'][:, :8]
    with pytest.raises(ValueError, match='do not match'): confusion_counts(_Oracle([0, 3, 1, 2, 0], 4), bad, 5, 4, progress=False)


def test_prototypes_weighted_by_patch_fraction():
    lab = torch.tensor([[[0, 1], [1, 1]]]).repeat_interleave(2, 1).repeat_interleave(2, 2)  # 4x4, one 2x2 cell is class 0
    fr = patch_fractions(lab, 2, (1, 1)); assert torch.allclose(fr[0, 0, 0], torch.tensor([.25, .75]))
    P = Prototypes(3, 2).add(torch.tensor([[[[2.]], [[4.]]]]), lab)
    assert torch.allclose(P.weights.float(), torch.tensor([.25, .75, 0])) and torch.allclose(P.mean()[1], torch.tensor([2., 4.]))
    S = prototype_similarity(P, P)
    assert np.isnan(S[2]).all() and np.isclose(S[0, 1], 1)


def test_backbone_errors_name_whats_missing():
    with pytest.raises(FileNotFoundError, match='dino_vits16'): load_backbone('dino_vits16', weights='/no/such/file.pth')
    with pytest.raises(ValueError, match='efficientnet-lite0'): load_backbone('vgg')


def test_cli_random_and_errors(tmp_path, capsys):
    assert affinity_cli(['--method', 'random', '--source', 'cocostuff', '--target', 'ade20k', '--out', str(tmp_path/'r.npy')]) == 0
    assert Affinity.load(tmp_path/'r.npy').shape == (151, 183)
    with pytest.raises(SystemExit): affinity_cli(['--method', 'text', '--source', 'coco', '--target', 'ade20k', '--out', str(tmp_path/'t.npy')])
    with pytest.raises(SystemExit): affinity_cli(['--method', 'features', '--source', 'cocostuff', '--target', 'ade20k', '--out', str(tmp_path/'f.npy')])
    rc = affinity_cli(['--method', 'text', '--source', 'cocostuff', '--target', 'ade20k', '--text-encoder', 'clip',
                       '--text-weights', str(tmp_path/'no_clip'), '--out', str(tmp_path/'t.npy')])
    assert rc == 2 and 'CLIP text encoder weights not found' in capsys.readouterr().err
    # combination from saved files
    for k, top in (('text', [0, 1, 2, 2]), ('features', [0, 1, 1, 0]), ('segmentation', [0, 2, 1, 1])):
        _aff(top, method=k).save(tmp_path/f'{k}.npy')
    assert affinity_cli(['--method', 'combination', '--inputs', *[str(tmp_path/f'{k}.npy') for k in ('text', 'features', 'segmentation')],
                         '--fid', 'text=1', 'features=2', 'segmentation=3', '--out', str(tmp_path/'c.npy')]) == 0
    assert list(Affinity.load(tmp_path/'c.npy').top1()) == [0, 1, 1, 2]


def test_text_affinity_real_names():
    from cat_nb.affinity_text import known_correspondences, load_text_encoder, text_affinity
    enc = load_text_encoder('minilm')
    a = text_affinity('ade20k', 'cocostuff', enc)
    assert a.shape == (151, 183) and 'MiniLM' in a.meta['text_encoder']
    r = top1_agreement(a, known_correspondences('ade20k', 'cocostuff'))
    assert r['agreement'] > 0.7, r['agreement']


def test_features_cli_on_synthscenes(tmp_path, monkeypatch):
    monkeypatch.setenv('CAT_NB_HOME', str(tmp_path/'home'))  # the source-prototype cache goes here
    from cat_nb.synth import write_synth, ground_truth_correspondence
    for like in ('cocostuff', 'ade20k'): write_synth(tmp_path/like, like, n_train=12, n_val=0, size=32, progress=False)
    out = tmp_path/'f.npy'
    rc = affinity_cli(['--method', 'features', '--source', 'cocostuff', '--target', 'ade20k', '--source-data', str(tmp_path/'cocostuff'),
                       '--target-data', str(tmp_path/'ade20k'), '--size', '32', '--backbone', 'efficientnet-lite0', '--input-size', '128',
                       '--device', 'cpu', '--out', str(out)])
    assert rc == 0
    a = Affinity.load(out)
    assert a.meta['backbone'].startswith('efficientnet-lite0') and np.isfinite(a.A).all()
    gt = gt_from_matrix(ground_truth_correspondence(tmp_path/'cocostuff', tmp_path/'ade20k'))
    r = top1_agreement(a, gt)
    assert r['agreement'] > 0.1, r  # chance is 1/171; 12 images of 32 px are a weak signal
    assert (tmp_path/'home'/'cache'/'affinity_prototypes').is_dir()


@pytest.mark.slow
def test_text_speed_target():
    from cat_nb.affinity_text import load_text_encoder, text_affinity
    enc = load_text_encoder('minilm')
    t0 = time.perf_counter(); text_affinity('ade20k', 'cocostuff', enc); text_affinity('cocostuff', 'ade20k', enc)
    assert time.perf_counter() - t0 < 10


def test_cli_segmentation_with_oasis_discriminator(tmp_path):
    "`cat-nb affinity --method segmentation --segmenter RUN` uses a source OASIS run's discriminator class head (Eq. 1)."
    import numpy as np
    from cat_nb.synth import write_synth
    from cat_nb.train import train_config, train_source
    from cat_nb.affinity_cli import affinity_cli
    from cat_nb.affinity import Affinity
    src = write_synth(tmp_path/'ade', 'ade20k', n_train=4, n_val=2, size=32, seed=0, progress=False)
    tgt = write_synth(tmp_path/'cs', 'cityscapes', n_train=4, n_val=2, size=32, seed=1, progress=False)
    train_source(src, train_config('ade20k', 'quick', iters=2, ckpt_every=2, sample_every=2), tmp_path/'run', progress=False)
    out = tmp_path/'seg.npy'
    assert affinity_cli(['--method', 'segmentation', '--source', 'ade20k', '--target', 'cityscapes', '--segmenter', str(tmp_path/'run'),
                         '--target-data', str(tgt), '--size', '32', '--out', str(out)]) == 0
    aff = Affinity.load(out)
    assert aff.A.shape == (35, 151) and np.allclose(aff.A.sum(1), 1) and np.isfinite(aff.A).all()
    assert 'discriminator' in aff.meta['segmenter']
