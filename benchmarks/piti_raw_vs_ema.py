"""Session 9: evaluate the RAW (non-EMA) weights of a finished PITI transfer run on the pipeline's protocol (the first `PITI_EVAL_N` val maps, seed 0),
to compare with the EMA that the pipeline evaluates (its `pipeline_eval.json`).

    python benchmarks/piti_raw_vs_ema.py RUN_FOLDER [model|EMA]
"""
import sys, json, time, torch
torch.set_num_threads(1)
from pathlib import Path
from cat_nb.pipeline import dataset, segmenter, PITI_EVAL_N, RunDir
from cat_nb.transfer_piti import load_piti_transfer
from cat_nb.metrics import evaluate
run = Path(sys.argv[1]); which = sys.argv[2] if len(sys.argv) > 2 else 'model'
cfg = RunDir(run).config; target = cfg['train']['like']
val = dataset(target, 'standard', 'val', subset=list(range(PITI_EVAL_N['standard']))); seg = segmenter(target, 'standard', None, 'cpu')
G, pc = load_piti_transfer(run, 'cpu', which=which)
t0 = time.time(); r = evaluate(pc.backbone.generate_fn(G, 'cpu'), val, ('fid', 'kid', 'miou'), segmenter=seg, seed=0, device='cpu')
print(json.dumps(dict(run=run.name, which=which, fid=round(r['fid'], 1), kid=round(r['kid'], 4), miou=round(r['miou'], 3), s=round(time.time() - t0))), flush=True)
