"""Session 8: move the cached standard PITI sources (2000-step recipe) to the 4000-step recipe without retraining the first 2000.

For each source it copies the old run folder (config with iters 2000) into the new recipe's folder, writes the new config and
records the extension in provenance.json and metrics.jsonl (as `RunDir(..., extend=True)` does; the new recipe also changes the
preview guidance, which only the sample grids read). With `--probe LIKE=DIR` it adds the checkpoints (and metrics) of a
continuation of that same run made by `piti_source_probe.py --from RUN` (same recipe: constant lr 2e-4 and EMA), up to the
new length. The pipeline then resumes each folder to 4000 steps (`piti_source_run` / `cat-nb reproduce`): a resumed PITI run
ends identical to an uninterrupted one (nbs/36), so these are the models the 4000-step recipe trains.

    python benchmarks/extend_piti_sources.py --probe ade20k=PROBE/ade20k_standard_from2000_lr2e-4 --probe cocostuff=PROBE/cocostuff_...
"""
import argparse, json, shutil
from pathlib import Path
from cat_nb.core import to_jsonable, git_revision, atomic_write
from cat_nb.pipeline import piti_source_dir, piti_uncond_source_dir

OLD = dict(iters=2000, sample_guidance=1.3)        # the session-6 recipe

def _dirs(like):
    if like == 'uncond': return piti_uncond_source_dir('standard', **OLD)[0], *piti_uncond_source_dir('standard')[::2]
    return piti_source_dir(like, 'standard', **OLD)[0], *piti_source_dir(like, 'standard')[::2]

def extend(like, probe=None):
    old, new, cfg = _dirs(like)
    if (new/'config.json').exists(): print(f'{like}: {new} exists, left alone'); return new
    if not (old/'done.json').exists(): raise SystemExit(f'{like}: no finished 2000-step run at {old}')
    tmp = new.with_name(new.name + '.tmp'); shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(old, tmp, ignore=shutil.ignore_patterns('eval_*', 'source_eval.json', 'done.json'))
    step = 2000
    if probe:
        probe = Path(probe)
        for ck in sorted((probe/'checkpoints').glob('step_*.pt')):
            s = int(ck.stem.split('_')[-1])
            if 2000 < s <= cfg.iters: shutil.copy2(ck, tmp/'checkpoints'/ck.name); step = max(step, s)
        cks = sorted((tmp/'checkpoints').glob('step_*.pt'))
        for ck in cks[:-cfg.keep_ckpts]: ck.unlink()           # the recipe keeps its newest `keep_ckpts`
        old_lines = (tmp/'metrics.jsonl').read_text().splitlines()
        keep = lambda r: 2000 < r.get('step', 0) <= step and not (r.get('event') in ('resume', 'extended') and r['step'] >= step)
        more = [l for l in (probe/'metrics.jsonl').read_text().splitlines() if keep(json.loads(l))]
        for p in sorted((probe/'samples').glob('step_*.png')):
            if 2000 < int(p.stem.split('_')[-1]) <= step: shutil.copy2(p, tmp/'samples'/p.name)
    rec = {'from': 2000, 'to': cfg.iters, 'step': 2000, 'continued_in': str(probe) if probe else None, 'continued_to': step,
           'note': 'session 8: the 2000-step standard recipe extended to 4000 steps (preview guidance 1.3 -> 3.0)', **git_revision()}
    atomic_write(tmp/'provenance.json', json.dumps(dict(extended=[rec]), indent=1) + '\n')
    ext = json.dumps(dict(step=2000, event='extended', iters_from=2000, iters_to=cfg.iters, commit=rec.get('commit')))
    lines = [*old_lines, ext, *more] if probe else [*(tmp/'metrics.jsonl').read_text().splitlines(), ext]
    atomic_write(tmp/'metrics.jsonl', '\n'.join(lines) + '\n')
    atomic_write(tmp/'config.json', json.dumps(to_jsonable(cfg), indent=2, sort_keys=True) + '\n')
    tmp.rename(new); print(f'{like}: {old.name} -> {new.name}, checkpoints to step {step}')
    return new

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--probe', action='append', default=[], help='LIKE=DIR: a continuation of that source (piti_source_probe.py --from)')
    ap.add_argument('--likes', nargs='+', default=['ade20k', 'cocostuff', 'uncond'])
    a = ap.parse_args(); probes = dict(p.split('=', 1) for p in a.probe)
    for l in a.likes: extend(l, probes.get(l))
