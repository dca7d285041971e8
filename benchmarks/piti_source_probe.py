"""Train a PITI source model on a SynthScenes set with a preset's recipe and measure it on the OASIS source models' protocol.

    python benchmarks/piti_source_probe.py --like ade20k --preset standard --out RUN [--data ROOT] [--respacing 25 --guidance 1.3]
    python benchmarks/piti_source_probe.py --like ade20k --out RUN3000 --from RUN --iters 3000 --guidance 3.0 --val-seed 1

Trains (or resumes) `cat_nb.piti_train.train_piti` in RUN (default data: the pipeline's SynthScenes set of the preset), then
samples one image per validation map from the EMA model and prints FID/KID on them (`cat_nb.metrics.evaluate`), writing
RUN/eval_<respacing>_<guidance>[_valseed<N>].json. `--from` continues a copy of another run (its newest checkpoint) to
`--iters`, with `--train` overrides (a new lr reaches the optimizer too): with constant lr and EMA, continuing a run of the
same recipe is the trajectory a longer run trains. `--val-seed N` evaluates on a freshly synthesised set of seed N
(guard against tuning to one val set). Frame the number with the `source_models` report's floor and trivial baselines."""
import argparse, json, shutil, time
from pathlib import Path

import torch

from cat_nb.core import RunDir, to_jsonable
from cat_nb.data import SegDataset
from cat_nb.diffusion import sample
from cat_nb.metrics import evaluate
from cat_nb.pipeline import synth_data
from cat_nb.piti import build_piti, load_piti_state
from cat_nb.piti_train import piti_train_config, train_piti


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--like', default='ade20k'); ap.add_argument('--preset', default='standard')
    ap.add_argument('--out', required=True, type=Path); ap.add_argument('--data', type=Path, default=None)
    ap.add_argument('--iters', type=int, default=None, help="training iterations (default: the preset's)")
    ap.add_argument('--respacing', default='25'); ap.add_argument('--guidance', type=float, default=1.3)
    ap.add_argument('--threads', type=int, default=1, help='torch threads for training (sampling uses all cores)')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--model', type=json.loads, default={}, help='architecture overrides as JSON, e.g. \'{"model_channels": 32}\'')
    ap.add_argument('--train', type=json.loads, default={}, help='training overrides as JSON, e.g. \'{"lr": 2e-4}\'')
    ap.add_argument('--eval-threads', type=int, default=0, help='torch threads for sampling and FID (0: keep --threads)')
    ap.add_argument('--eval-only', action='store_true', help='evaluate the latest checkpoint in RUN without training further')
    ap.add_argument('--from', dest='src', type=Path, help='continue a copy of this run folder (its newest checkpoint) in --out')
    ap.add_argument('--val-seed', type=int, default=0, help='evaluate on the SynthScenes val set of this seed (default 0: --data)')
    a = ap.parse_args(argv)
    data = a.data or synth_data(a.like, a.preset)
    cfg = piti_train_config(a.like, a.preset, model=a.model, **a.train, **({'iters': a.iters} if a.iters else {}))
    if a.src and not a.out.exists():
        ck = RunDir(a.src).latest_checkpoint()
        if ck is None: ap.error(f'--from {a.src}: no checkpoint')
        shutil.copytree(a.src, a.out, ignore=lambda d, names: [n for n in names if n.startswith(('eval_', 'source_eval', 'done.json'))
                                                                 or (n.startswith('step_') and n.endswith('.pt') and n != ck.name)])
        (a.out/'config.json').write_text(json.dumps(to_jsonable(cfg), indent=2, sort_keys=True) + '\n')
        st = torch.load(a.out/'checkpoints'/ck.name, map_location='cpu', weights_only=False)
        for g in st['opt']['param_groups']: g['lr'] = cfg.lr                 # the optimizer state would restore the old lr
        torch.save(st, a.out/'checkpoints'/ck.name)
    torch.set_num_threads(a.threads); t0 = time.time()
    if not a.eval_only:
        train_piti(cfg, data, a.out, device=a.device, progress=True)
        print(f'trained in {time.time() - t0:.0f} s', flush=True)
    if a.eval_threads: torch.set_num_threads(a.eval_threads)
    st = RunDir(a.out).load_latest(); model = build_piti(cfg.model); load_piti_state(model, st['EMA']); model.eval()
    gen = lambda labels, seeds: sample(model, labels, respacing=a.respacing, guidance=a.guidance, seed=[int(s) for s in seeds], progress=False)
    vdata = synth_data(a.like, a.preset, seed=a.val_seed) if a.val_seed else data
    val = SegDataset(vdata, a.like, 'val', size=cfg.model.image_size, train=False)
    r = evaluate(gen, val, ('fid', 'kid'), device=a.device, progress=True)
    r = {k: v for k, v in r.items() if not isinstance(v, (list, dict))} | dict(step=st['step'], respacing=a.respacing, guidance=a.guidance, val_seed=a.val_seed)
    name = f'eval_{a.respacing}_{a.guidance}' + (f'_valseed{a.val_seed}' if a.val_seed else '')
    (a.out/f'{name}.json').write_text(json.dumps(r, indent=1) + '\n'); print(json.dumps(r, indent=1))


if __name__ == '__main__':
    main()
