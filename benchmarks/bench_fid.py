"""Benchmark FID + KID of 500 generated 64x64 images through the full `cat_nb.metrics.evaluate(..., metrics=('fid', 'kid'))`
path, with the reference (real) features already cached: the issue-6 requirement is at most 60 s on 2 CPU cores once the
weights are provisioned (`cat-nb weights --provision`).

    python benchmarks/bench_fid.py                          # 500 images, 64x64, all cores, the default Inception implementation
    python benchmarks/bench_fid.py --impl both              # the previous path (torch-fidelity's module + its KID loop), then the default
    python benchmarks/bench_fid.py --threads 1 --n 100      # a quick comparison on a loaded machine
    python benchmarks/bench_fid.py --json out.json

Data: SynthScenes-ADE20K val (`cat_nb.synth`, 500 images at 64x64, written once into cat_nb's cache, or --data ROOT).
Generator: an OASIS `standard` ADE20K generator (64x64) with seeded random weights: its weights do not change the cost.
The timed part is one `evaluate` call: generating the images, loading the Inception network (and its self-check),
their features, FID and KID. Printed: seconds (with a breakdown), threads, load average, and the largest difference
between the features used and torch-fidelity's own `FeatureExtractorInceptionV3` on the same uint8 images.
Not a test: timings depend on the machine and on its load.
"""
from __future__ import annotations
import argparse, json, os, platform, sys, time
from pathlib import Path

import torch


class Timer:
    "Accumulates wall (`t`) and process CPU (`c`) seconds of wrapped functions by name."
    def __init__(self): self.t, self.c = {}, {}
    def add(self, name, t0, c0):
        self.t[name] = self.t.get(name, 0.0) + time.perf_counter() - t0
        self.c[name] = self.c.get(name, 0.0) + time.process_time() - c0
    def wrap(self, name, f):
        def g(*a, **k):
            t0, c0 = time.perf_counter(), time.process_time()
            try: return f(*a, **k)
            finally: self.add(name, t0, c0)
        return g


def bench_data(n: int, size: int, root: str | None) -> Path:
    from cat_nb.core import paths
    from cat_nb.synth import write_synth
    if root: return Path(root)
    n = max(n, 500)                                                   # one set of 500 (or more); smaller runs use its first n
    out = paths()['cache']/'bench_fid'/f'synth_ade20k_val{n}_{size}'
    if not (out/'concepts.json').exists():
        print(f'writing SynthScenes-ADE20K val ({n} images, {size}x{size}) to {out} (once)', flush=True)
        write_synth(out, 'ade20k', 0, n, size, progress=False)
    return out


def run_once(impl: str, kid: str, val, gen, device: str) -> dict:
    from cat_nb import metrics as M
    os.environ['CAT_NB_INCEPTION'] = impl
    M.reference_features(val, device=device, progress=False)        # cached on disk after the first run: not part of the timing
    M.inception.cache_clear()                                         # the timed run loads (and self-checks) the network itself
    T = Timer()
    saved = {k: getattr(M, k) for k in ('inception', 'inception_features', 'kid_from_features', 'fid_from_features', 'reference_features', 'cpu_parallel')}
    try:
        for k, f in saved.items():
            if k not in ('inception', 'cpu_parallel'): setattr(M, k, T.wrap(k, M.kid_torch_fidelity if k == 'kid_from_features' and kid == 'torch-fidelity' else f))
        M.inception = functools_cache_wrap(saved['inception'], T)
        par, timed_gen = saved['cpu_parallel'], T.wrap('generator', gen)       # on the CPU the generator runs in concurrent chunks:
        M.cpu_parallel = lambda fn, *xs, **k: T.wrap('generator', par)(gen, *xs, **k) if fn is timed_gen else par(fn, *xs, **k)   # time the whole call once
        load0 = os.getloadavg()
        t0, c0 = time.perf_counter(), time.process_time()
        res = M.evaluate(timed_gen, val, metrics=('fid', 'kid'), device=device, progress=False)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        for k, f in saved.items(): setattr(M, k, f)
    load1 = os.getloadavg()
    def parts(d):
        g = lambda k: d.get(k, 0.0)
        return dict(generator=round(g('generator'), 2), inception_load_and_check=round(g('inception_load'), 2),
                    inception_features=round(g('inception_features') - g('inception_load'), 2), reference_features_cached=round(g('reference_features'), 2),
                    kid=round(g('kid_from_features'), 2), fid=round(g('fid_from_features'), 2))
    return dict(impl=impl, kid_impl=kid, impl_used=res.get('inception_impl'), seconds=round(secs, 2), metric_seconds=round(secs - T.t.get('generator', 0.0), 2), cpu_seconds=round(cpu, 2), fid=res['fid'], kid=res['kid'],
                breakdown_s=parts(T.t), breakdown_cpu_s=parts(T.c), loadavg_before=[round(x, 2) for x in load0], loadavg_after=[round(x, 2) for x in load1])


def functools_cache_wrap(inception, T: Timer):
    "Time the first (network-building) call of the cached `inception()` separately."
    def f(*a, **k):
        info = inception.cache_info()
        t0, c0 = time.perf_counter(), time.process_time(); m = inception(*a, **k)
        if inception.cache_info().misses > info.misses: T.add('inception_load', t0, c0)
        return m
    f.cache_clear = inception.cache_clear; f.cache_info = inception.cache_info
    return f


def feature_check(impl: str, val, gen, device: str, n: int = 24) -> float:
    "max |features(impl) - torch-fidelity's FeatureExtractorInceptionV3| on n/2 generated + n/2 real val images (uint8)."
    from cat_nb import metrics as M
    labels = torch.stack([val[i]['label'] for i in range(n // 2)])
    x = torch.cat([M.to_uint8(gen(labels, list(range(n // 2)))), M.to_uint8(torch.stack([val[i]['image'] for i in range(n // 2)]))])
    return M.feature_difference(M.inception(device, impl), M.inception(device, 'torch-fidelity'), x.to(M.get_device(device)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n', type=int, default=500, help='number of validation maps = generated images (default 500)')
    ap.add_argument('--size', type=int, default=64, help='image size (default 64)')
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: torch\'s default, one per core)')
    ap.add_argument('--impl', default='auto', choices=['auto', 'fast', 'torch-fidelity', 'both'],
                    help="Inception implementation (default auto); 'both': first the previous path (torch-fidelity's module and its KID loop), then auto")
    ap.add_argument('--kid', default='fast', choices=['fast', 'torch-fidelity'], help="KID: cat_nb's (default) or torch-fidelity's own loop")
    ap.add_argument('--device', default='cpu', help='cpu (default), cuda or auto')
    ap.add_argument('--data', default=None, help='an ADE20K-layout dataset root to use instead of SynthScenes')
    ap.add_argument('--limit', type=float, default=60.0, help='the requirement in seconds (default 60)')
    ap.add_argument('--json', default=None, help='also write the results here')
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    from cat_nb import metrics as M
    from cat_nb.data import SegDataset
    from cat_nb.oasis import oasis_config, build_oasis
    from cat_nb.weights import require
    require('inception-v3-fid')
    root = bench_data(a.n, a.size, a.data)
    val = SegDataset(root, 'ade20k', 'val', size=a.size, train=False, subset=list(range(a.n)))
    torch.manual_seed(0)
    G, _ = build_oasis(oasis_config('ade20k', 'standard', crop_size=a.size))
    gen = M.oasis_generate_fn(G, a.device)
    head = dict(n=len(val), size=a.size, threads=torch.get_num_threads(), cpus=os.cpu_count(), device=str(M.get_device(a.device)),
                torch=torch.__version__, python=platform.python_version(), nice=os.nice(0))
    print(f"bench_fid: {head['n']} images {a.size}x{a.size}, torch {head['torch']}, {head['threads']} threads on {head['cpus']} CPUs, "
          f"device {head['device']}, nice {head['nice']}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    impls = [('torch-fidelity', 'torch-fidelity'), ('auto', 'fast')] if a.impl == 'both' else [(a.impl, a.kid)]
    runs = []
    for impl, kid in impls:
        r = run_once(impl, kid, val, gen, a.device)
        r['feature_max_abs_diff_vs_torch_fidelity'] = 0.0 if r['impl_used'] == 'torch-fidelity' else feature_check(r['impl_used'], val, gen, a.device)
        runs.append(r)
        b, c = r['breakdown_s'], r['breakdown_cpu_s']
        print(f"  inception {impl} (used: {r['impl_used']}), KID {kid}: {r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU | wall (CPU) s: generator {b['generator']:.1f} ({c['generator']:.1f}), "
              f"Inception load+check {b['inception_load_and_check']:.1f} ({c['inception_load_and_check']:.1f}), features {b['inception_features']:.1f} "
              f"({c['inception_features']:.1f}), KID {b['kid']:.2f} ({c['kid']:.2f}), FID {b['fid']:.2f} ({c['fid']:.2f}) | FID {r['fid']:.3f} "
              f"KID {r['kid']:.5f} | load avg before {r['loadavg_before']}, after {r['loadavg_after']}", flush=True)
    for r in runs:
        ok = r['seconds'] <= a.limit
        d = r['feature_max_abs_diff_vs_torch_fidelity']
        print(f"RESULT bench_fid: FID+KID of {head['n']} generated {a.size}x{a.size} images (all of evaluate but generating them) in "
              f"{r['metric_seconds']:.1f} s [{'MEETS' if r['metric_seconds'] <= a.limit else 'MISSES'} <= {a.limit:.0f} s]; with generating them "
              f"{r['seconds']:.1f} s [{'MEETS' if ok else 'MISSES'} <= {a.limit:.0f} s] | inception {r['impl_used']}, KID {r['kid_impl']}, {head['threads']} threads, "
              f"load avg {' '.join(f'{x:.2f}' for x in r['loadavg_before'])} | features max |diff| vs torch-fidelity {d:.2e} "
              f"[{'OK' if d <= 1e-3 else 'TOO LARGE'} <= 1e-3]")
    if a.json: Path(a.json).write_text(json.dumps(dict(head, runs=runs), indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
