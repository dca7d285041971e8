"""Benchmark one OASIS training iteration (G step + D step with LabelMix + EMA): ms/iteration, peak memory, achieved
FLOP/s (torch.utils.flop_counter) as a fraction of the dense fp32 matmul FLOP/s measured in the same run.

    python benchmarks/bench_oasis.py                       # standard (5 timed iters) and paper (1 iter), CPU or CUDA
    python benchmarks/bench_oasis.py --presets quick standard --iters 10 --channels-last both
    python benchmarks/bench_oasis.py --json out.json

Each configuration runs in its own subprocess, so the CPU peak (max RSS) belongs to that configuration alone.
Not a test: timings depend on the machine and its load.
"""
from __future__ import annotations
import argparse, json, os, resource, subprocess, sys, time

import torch


def matmul_flops(device: torch.device, n: int = 2048, reps: int = 5) -> float:
    "Dense fp32 matmul FLOP/s on this device (best of `reps`)."
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float('inf')
    for _ in range(reps + 1):
        if device.type == 'cuda': torch.cuda.synchronize()
        t = time.perf_counter(); a @ b
        if device.type == 'cuda': torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def run_one(like: str, preset: str, iters: int, batch: int | None, channels_last: bool, device: str) -> dict:
    from torch.utils.flop_counter import FlopCounterMode
    from cat_nb.core import get_device, device_summary
    from cat_nb.oasis import n_params
    from cat_nb.train import train_config, OASISTrainer
    dev = get_device(device)
    over = dict(channels_last=channels_last)
    if batch: over['batch_size'] = batch
    cfg = train_config(like, preset, **over)
    tr = OASISTrainer(cfg, dev)
    h, w = cfg.model.image_hw; B = cfg.batch_size
    g = torch.Generator().manual_seed(0)
    batch_ = {'image': torch.rand(B, 3, h, w, generator=g) * 2 - 1, 'label': torch.randint(0, cfg.model.semantic_nc, (B, h, w), generator=g)}
    sync = (lambda: torch.cuda.synchronize()) if dev.type == 'cuda' else (lambda: None)
    with FlopCounterMode(display=False) as fc:                       # counts conv/matmul FLOPs of one iteration
        tr.step(batch_, 0)
    flops = fc.get_total_flops()
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for s in range(1, iters + 1):
        sync(); t = time.perf_counter(); tr.step(batch_, s); sync(); times.append(time.perf_counter() - t)
    ms = 1000 * sorted(times)[len(times) // 2]
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == 'cuda' else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mm = matmul_flops(dev)
    return dict(like=like, preset=preset, hw=[h, w], batch=B, channels_last=channels_last, device=device_summary(dev),
                G_params=n_params(tr.G), D_params=n_params(tr.D), iters_timed=iters, ms_per_iter=round(ms, 1),
                ms_all=[round(1000 * t, 1) for t in times], peak_mem_MiB=round(peak / 2**20, 1),
                step_GFLOP=round(flops / 1e9, 2), achieved_GFLOPs=round(flops / (ms / 1000) / 1e9, 2),
                matmul_GFLOPs=round(mm / 1e9, 1), fraction_of_matmul=round(flops / (ms / 1000) / mm, 4),
                threads=torch.get_num_threads())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--like', default='ade20k', choices=['ade20k', 'cocostuff', 'cityscapes'])
    p.add_argument('--presets', nargs='+', default=['standard', 'paper'])
    p.add_argument('--iters', type=int, default=5, help='timed iterations (paper on CPU: 1)')
    p.add_argument('--batch', type=int, help='override the preset batch (paper on CPU defaults to 1)')
    p.add_argument('--channels-last', choices=['off', 'on', 'both'], default='off')
    p.add_argument('--device', default='auto'); p.add_argument('--json')
    p.add_argument('--_one', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._one:
        preset, cl = a._one.split(':')
        print(json.dumps(run_one(a.like, preset, a.iters, a.batch, cl == 'on', a.device))); return 0
    cpu = not torch.cuda.is_available() or a.device == 'cpu'
    rows = []
    for preset in a.presets:
        for cl in (['off', 'on'] if a.channels_last == 'both' else [a.channels_last]):
            iters = 1 if (preset == 'paper' and cpu) else a.iters
            batch = a.batch or (1 if (preset == 'paper' and cpu) else None)
            cmd = [sys.executable, __file__, '--_one', f'{preset}:{cl}', '--like', a.like, '--iters', str(iters), '--device', a.device]
            if batch: cmd += ['--batch', str(batch)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode: print(r.stderr[-2000:], file=sys.stderr); continue
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            x = rows[-1]
            print(f"{x['like']}/{x['preset']:<8} {x['hw'][0]}x{x['hw'][1]} B={x['batch']:<3} cl={cl:<3} | {x['ms_per_iter']:>10.1f} ms/iter | "
                  f"peak {x['peak_mem_MiB']:>8.0f} MiB | {x['step_GFLOP']:>8.2f} GFLOP/iter | {x['achieved_GFLOPs']:>7.2f} GFLOP/s = "
                  f"{100*x['fraction_of_matmul']:.1f}% of matmul {x['matmul_GFLOPs']} GFLOP/s | {x['device']}", flush=True)
    if a.json:
        with open(a.json, 'w') as f: json.dump(rows, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
