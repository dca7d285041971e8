"""Session 9: why does finetuning add so little to training-free CAT on SynthScenes? A probe of one hypothesis.

SynthScenes paints every dataset from ONE material bank (`cat_nb.synth.MATERIALS`): a COCO-Stuff-like "tree" has exactly the
texture of an ADE20K-like "tree". Once the affinity maps a target class onto the right source classes, the source generator
already paints the target's appearance, and finetuning can only fix layouts and mixtures. Real ADE20K and COCO-Stuff photos
differ in more than their label sets. This script gives the target an appearance gap the source never saw (another camera:
warm white balance, lifted blacks, gamma 0.8; labels unchanged), then runs the pipeline's CAT runs training-free and finetuned
(ADE20K-like -> COCO-Stuff-like, text affinity, seed 0, the standard preset's schedules) for OASIS and PITI, with and without
the gap. The target's segmenter (mIoU) is trained on the target it scores. Runs are cached by the pipeline like any other.

    python benchmarks/appearance_gap.py --out reports/results/standard/appearance_gap      # ~1.5 CPU h cold, 2 jobs at a time
"""
import argparse, json, shutil
from pathlib import Path
import numpy as np
from PIL import Image

GAIN, LIFT, GAMMA = np.array([1.10, 0.96, 0.70], np.float32), np.array([0.06, 0.04, 0.0], np.float32), 0.8

def camera(x: np.ndarray) -> np.ndarray:
    "Another camera's look of uint8 (H, W, 3) images: white balance GAIN, blacks lifted by LIFT, gamma GAMMA."
    y = np.clip(np.asarray(x, np.float32) / 255 * GAIN, 0, 1) ** GAMMA
    return np.round(np.clip(LIFT + (1 - LIFT) * y, 0, 1) * 255).astype(np.uint8)

def tinted_copy(src: Path, out: Path) -> Path:
    "A copy of the SynthScenes folder `src` (COCO-Stuff layout) with `camera` applied to every photo; written once."
    if (out/'tinted.json').exists(): return out
    tmp = out.with_name(out.name + '.tmp'); shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns('segmenter*', '*.pt'))
    for p in sorted(tmp.glob('*2017/*.jpg')):
        Image.fromarray(camera(np.asarray(Image.open(p).convert('RGB')))).save(p, quality=95)   # the quality SynthScenes writes
    (tmp/'tinted.json').write_text(json.dumps(dict(source=str(src), gain=GAIN.tolist(), lift=LIFT.tolist(), gamma=GAMMA)) + '\n')
    from cat_nb.synth import _swap_in
    _swap_in(tmp, out)                                    # as `cat-nb synth` does: an older copy is replaced only once this one is whole
    return out

def frame(data: Path) -> dict:
    """FID on the tinted val split (the OASIS runs' protocol: 200 maps) of tinted train images (the floor) and of the untinted
    val images (a perfect generator with the source camera's look: the gap as FID sees it)."""
    from cat_nb.pipeline import dataset
    from cat_nb.metrics import reference_features, fid_from_features
    f = lambda ds: reference_features(ds, device='cpu', cache=False, progress=False)
    val_t, val = f(dataset('cocostuff', 'standard', 'val', roots=dict(cocostuff=str(data)))), f(dataset('cocostuff', 'standard', 'val'))
    tr_t = f(dataset('cocostuff', 'standard', 'train', subset=list(range(200)), roots=dict(cocostuff=str(data))))
    return dict(floor_tinted_train=round(fid_from_features(val_t, tr_t), 1), untinted_val=round(fid_from_features(val_t, val), 1))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', default='/tmp/s9/data/synth_cocostuff_tinted', help='where the tinted COCO-Stuff-like copy lives')
    ap.add_argument('--out', default=None, help='folder for appearance_gap.csv / .md (printed only when absent)')
    ap.add_argument('--backbones', default='oasis,piti')
    a = ap.parse_args(argv)
    import torch; torch.set_num_threads(1)
    from cat_nb.runspec import RunSpec
    from cat_nb.pipeline import _execute, data_root
    data = tinted_copy(data_root('cocostuff', 'standard'), Path(a.data))
    fr = frame(data); print('frame (FID on the tinted val maps):', json.dumps(fr), flush=True)
    rows = []
    for bb in a.backbones.split(','):
        for gap, roots in (('none', None), ('camera', dict(cocostuff=str(data)))):
            for tf in (True, False):
                s = RunSpec('ade20k', 'cocostuff', 'cat', 'text', tf, 0, 100, backbone=bb)
                r = _execute(s, 'standard', roots, 'cpu')
                rows.append(dict(backbone=bb, appearance_gap=gap, finetuned=not tf, fid=round(r['fid'], 1), kid=round(r['kid'], 4),
                                 miou=round(100 * r['miou'], 1), miou_real=round(100 * r['miou_real'], 1),
                                 seconds=round((r.get('train_seconds') or 0) + (r.get('eval_seconds') or 0))))   # the run's own, cached or not
                print(json.dumps(rows[-1]), flush=True)
    import pandas as pd
    d = pd.DataFrame(rows)
    w = d.pivot_table(index=['backbone', 'appearance_gap'], columns='finetuned', values=['fid', 'miou'])
    w.columns = [f"{m}_{'finetuned' if f else 'training_free'}" for m, f in w.columns]
    w['fid_gain_of_finetuning'] = (w.fid_training_free - w.fid_finetuned).round(1)
    w['miou_gain_of_finetuning'] = (w.miou_finetuned - w.miou_training_free).round(1)
    w = w.reset_index(); print(w.to_markdown(index=False))
    if a.out:
        o = Path(a.out); o.mkdir(parents=True, exist_ok=True); d.to_csv(o/'appearance_gap_runs.csv', index=False)
        w.to_csv(o/'appearance_gap.csv', index=False); (o/'appearance_gap.md').write_text(w.to_markdown(index=False) + '\n')
        (o/'appearance_gap_frame.json').write_text(json.dumps(fr, indent=1) + '\n')

if __name__ == '__main__': main()
