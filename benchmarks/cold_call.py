"""Where a cold `make reproduce PRESET=standard BACKBONE=oasis` stands: the wall time of its parts (a call that outlives one
session here is stopped with it and resumed by the same command: the pipeline's cache keeps finished runs and checkpoints),
the runs finished, and their measured per-run costs against the cost model (`cat_nb.budget`).

    python benchmarks/cold_call.py --home /tmp/s12/home --log-dir /tmp/s12

--home: the CAT_NB_HOME of the cold call; --log-dir: the folder with cold.start.N (epoch seconds), cold.end.N (when the part
ended by itself) and cold.load ("HH:MM:SS loadavg..." every minute: the last stamp after a part's start is its end when
it was stopped). --compare DIR: each finished run's FID and mIoU against the committed row of the same run (name without its
hash; Figure 4's runs, which evaluate periodically, against `figure4/`; the other reports' CSVs under DIR otherwise).
"""
import argparse, datetime as dt, json, statistics
from pathlib import Path

def parts(log_dir: Path) -> list[dict]:
    "[{part, start, end, seconds, ended}] from cold.start.N / cold.end.N / the minute stamps of cold.load (same day as the start)."
    stamps = [l.split()[0] for l in (log_dir/'cold.load').read_text().splitlines()] if (log_dir/'cold.load').exists() else []
    out = []
    for f in sorted(log_dir.glob('cold.start.*'), key=lambda p: int(p.suffix[1:])):
        n = f.suffix[1:]; t0 = int(f.read_text())
        e = log_dir/f'cold.end.{n}'
        if e.exists(): t1, how = int(e.read_text()), 'finished' + (f" (rc {(log_dir/f'cold.rc.{n}').read_text().strip()})" if (log_dir/f'cold.rc.{n}').exists() else '')
        else:
            day = dt.datetime.fromtimestamp(t0, dt.timezone.utc).date()
            ts = [dt.datetime.combine(day, dt.time.fromisoformat(s), dt.timezone.utc).timestamp() for s in stamps]
            later = [t for t in ts if t >= t0]
            if nxt := [int((g).read_text()) for g in log_dir.glob('cold.start.*') if int(g.read_text()) > t0]: later = [t for t in later if t < min(nxt)]
            t1, how = (max(later) if later else t0), 'stopped (last minute stamp)'
        out.append(dict(part=int(n), start=t0, end=int(t1), seconds=int(t1 - t0), ended=how))
    return out

def runs(home: Path) -> list[dict]:
    "Finished transfer runs under the home's pipeline cache: iterations, training and evaluation seconds."
    rows = []
    for d in sorted((home/'cache'/'pipeline'/'transfer').glob('*')):
        if not (d/'done.json').exists(): continue
        done = json.loads((d/'done.json').read_text()); ev = json.loads((d/'pipeline_eval.json').read_text()) if (d/'pipeline_eval.json').exists() else {}
        ends = [m for m in map(json.loads, (d/'metrics.jsonl').read_text().splitlines()) if m.get('event') == 'end']
        rows.append(dict(run=d.name, steps=done.get('step', 0), training_free=done['spec']['training_free'], method=done['spec']['method'],
                         train_s=sum(m.get('seconds', 0) for m in ends), eval_s=ev.get('eval_seconds')))
    return rows

def compare(home: Path, results: Path) -> list[dict]:
    "[{run, fid, fid_committed, miou, miou_committed}] for the finished runs of `home` with one committed row of the same name."
    import pandas as pd
    fs = [pd.read_csv(f) for f in sorted(results.glob('*/*.csv')) if f.parent.name != 'figure4_1200']
    c = pd.concat([f for f in fs if {'fid', 'miou', 'run', 'method'} <= set(f.columns)])
    c = c[c.get('backbone', pd.Series('oasis', index=c.index)).fillna('oasis') != 'piti'].drop_duplicates('run')
    c['name'] = c.run.astype(str).str.rsplit('/', n=1).str[-1].str.rsplit('_', n=1).str[0]
    c['periodic'] = c.iterations.notna() & ~c.training_free.astype(bool)       # Figure 4's rows carry iterations to convergence
    out = []
    for d in sorted((home/'cache'/'pipeline'/'transfer').glob('*')):
        if not (d/'pipeline_eval.json').exists(): continue
        ev, spec = json.loads((d/'pipeline_eval.json').read_text()), json.loads((d/'done.json').read_text())['spec']
        m = c[(c.name == d.name.rsplit('_', 1)[0]) & (c.periodic == bool(spec['overrides']))]
        if len(m) == 1: out.append(dict(run=d.name, fid=ev['fid'], fid_committed=float(m.fid.iloc[0]), miou=ev['miou'], miou_committed=float(m.miou.iloc[0])))
    return out

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--home', required=True); ap.add_argument('--log-dir', required=True); ap.add_argument('--json', default=None)
    ap.add_argument('--compare', default=None, help='committed results folder (e.g. reports/results/standard): FID/mIoU against its rows')
    a = ap.parse_args()
    P, R = parts(Path(a.log_dir)), runs(Path(a.home))
    ft = [r for r in R if not r['training_free'] and r['steps']]
    its = [r['train_s'] / r['steps'] for r in ft if r['train_s']]
    rep = dict(parts=P, wall_hours=round(sum(p['seconds'] for p in P) / 3600, 3), runs_done=len(R), finetuned_done=len(ft),
               training_free_done=len(R) - len(ft), evaluated=sum(r['eval_s'] is not None for r in R),
               s_per_iter_median=round(statistics.median(its), 3) if its else None,
               cpu_hours_train=round(sum(r['train_s'] for r in R) / 3600, 3),
               cpu_hours_eval=round(sum(r['eval_s'] or 0 for r in R) / 3600, 3))
    for p in P: print(f"part {p['part']}: {dt.datetime.fromtimestamp(p['start'], dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {p['seconds'] / 3600:.2f} h, {p['ended']}")
    print(f"wall so far: {rep['wall_hours']} h; runs finished: {rep['runs_done']} ({rep['finetuned_done']} finetuned, {rep['training_free_done']} training-free), "
          f"{rep['evaluated']} evaluated; median {rep['s_per_iter_median']} s per iteration; CPU-hours: training {rep['cpu_hours_train']}, evaluation {rep['cpu_hours_eval']}")
    if a.compare:
        cmp = compare(Path(a.home), Path(a.compare)); rep['compare'] = cmp
        if cmp:
            dF, dM = [abs(r['fid'] - r['fid_committed']) for r in cmp], [100 * abs(r['miou'] - r['miou_committed']) for r in cmp]
            print(f"against {a.compare}: {len(cmp)} runs matched; |FID diff| median {statistics.median(dF):.2f}, max {max(dF):.2f}; "
                  f"|mIoU diff| median {statistics.median(dM):.2f} points, max {max(dM):.2f}")
    if a.json: Path(a.json).write_text(json.dumps(rep, indent=1) + '\n')
