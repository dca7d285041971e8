"""One CAT transfer iteration at `standard`, with and without the training step's speed switches (channels_last, d_batched).

    python benchmarks/bench_transfer.py [--direction cocostuff->ade20k] [--rounds 6] [--stage 2] [--threads 1]

The transfer starts from the shipped standard source model (cat_nb/pretrained) with a uniform affinity, on random label maps
and images of the target's size (the timing does not depend on the values). Each round runs one iteration of every variant in
rotating order, so all see the same machine load; it prints the median seconds per iteration and the speed-up over `plain`.
Before timing, it checks that the variants' first-iteration losses agree (the switches change memory layout and batching,
not the arithmetic). Not a test: compare ratios, not seconds, across runs.
"""
from __future__ import annotations
import argparse, statistics, sys, time

import numpy as np
import torch

VARIANTS = {'plain': dict(channels_last=False, d_batched=False), 'fast': dict(channels_last=True, d_batched=True)}


def build(source: str, target: str, variant: str):
    from cat_nb.shipped import load_shipped
    from cat_nb.transfer import transfer_config, TransferTrainer
    from cat_nb.data import class_names
    src = load_shipped(source, 'standard')
    cfg = transfer_config('cat', target, src['model'], 'standard', **VARIANTS[variant])
    A = np.full((len(class_names(target)), len(class_names(source))), 1.0 / len(class_names(source)), dtype=np.float32)
    return TransferTrainer(cfg, src, A, device='cpu')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--direction', default='cocostuff->ade20k', help="'source->target' (default: cocostuff->ade20k)")
    p.add_argument('--rounds', type=int, default=6, help='timed rounds (default: 6)')
    p.add_argument('--stage', type=int, default=2, choices=[1, 2], help='transfer stage to time: 1 (new parts only) or 2 (default: 2)')
    p.add_argument('--threads', type=int, default=1, help='torch threads (default: 1)')
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    source, target = [s.strip() for s in a.direction.split('->')]
    trs = {v: build(source, target, v) for v in VARIANTS}
    tc = trs['plain'].cfg; H = tc.model.crop_size; W = int(round(H * tc.model.aspect_ratio))
    g = torch.Generator().manual_seed(0)
    batch = dict(image=torch.rand(tc.batch_size, 3, H, W, generator=g) * 2 - 1,
                 label=torch.randint(0, tc.model.semantic_nc - 1, (tc.batch_size, H, W), generator=g))
    s = 0 if a.stage == 1 else trs['plain'].tcfg.stage1_iters
    first = {v: tr.step(batch, s) for v, tr in trs.items()}
    for k in ('G', 'D'):
        print(f"first-iteration loss {k}: " + ', '.join(f'{v} {first[v][k]:.6f}' for v in trs), flush=True)
    times, keys = {v: [] for v in trs}, list(trs)
    for r in range(a.rounds):
        for v in keys[r % len(keys):] + keys[:r % len(keys)]:
            t = time.perf_counter(); trs[v].step(batch, s + 1 + r); times[v].append(time.perf_counter() - t)
    med = {v: statistics.median(t) for v, t in times.items()}
    print(f"{a.direction}, stage {a.stage}, batch {tc.batch_size}, {H}x{W}, {torch.get_num_threads()} thread(s), {a.rounds} rounds")
    for v in trs: print(f"{v:6s} {med[v]:.3f} s/iter  speed-up over plain {med['plain'] / med[v]:.2f}x")
    return 0


if __name__ == '__main__':
    sys.exit(main())
