"""Session 9: does CAT-PITI finetuning improve on training-free with more steps? One pipeline run (standard preset, seed 0,
combination affinity, the standard transfer recipe: lr 2e-4, EMA 0.998, last encoder block + 8 prompts) for ITERS steps
with the EMA's FID every 300 steps on the first 50 val maps (`eval_every`, `eval_n`; step 0 = the training-free model).
Cached and resumable like any pipeline run; prints the periodic FIDs logged so far.

    python benchmarks/piti_finetune_length.py ade20k cocostuff 1200
"""
import sys, json, time, torch
torch.set_num_threads(1)
from cat_nb.pipeline import transfer_run, RunDir
src, tgt, iters = sys.argv[1], sys.argv[2], int(sys.argv[3]); extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
t0 = time.time()
run = transfer_run(src, tgt, 'cat', preset='standard', affinity='combination', backbone='piti', device='cpu', iters=iters, eval_every=300, eval_n=50, **extra)
print(run, round(time.time() - t0), 's')
for m in RunDir(run).metrics():
    if 'fid' in m: print(json.dumps(dict(step=m['step'], fid=round(m['fid'], 1), kid=round(m['kid'], 4))))
