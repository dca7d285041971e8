"""One CAT transfer iteration at `standard`, with and without the training step's speed switches (channels_last, d_batched).

    python benchmarks/bench_transfer.py [--direction cocostuff->ade20k] [--rounds 6] [--stage 2] [--threads 1]

The transfer starts from the shipped standard source model (cat_nb/pretrained) with a uniform affinity, on random label maps
and images of the target's size (the timing does not depend on the values). Each round runs one iteration of every variant in
rotating order, so all see the same machine load; it prints the median seconds per iteration and the speed-up over `plain`.
Before timing, it checks that the variants' first-iteration losses agree (the switches change memory layout and batching,
not the arithmetic). `--vgg` also times the step's VGG perceptual term alone (forward on the fake batch with its graph and on
the real batch, backward to the fake images; what the term costs inside `plain`'s step), in the same rounds.
Not a test: compare ratios, not seconds, across runs.
"""
from __future__ import annotations
import argparse, statistics, sys, time

import torch

VARIANTS = {'plain': dict(channels_last=False, d_batched=False), 'fast': dict(channels_last=True, d_batched=True)}


def build(direction: str, variant: str):
    "(trainer, batch) of `variant`, from the shipped standard source model (`cat_nb.budget.bench_transfer`)."
    from cat_nb.shipped import load_shipped
    from cat_nb.budget import bench_transfer
    from cat_nb.reports import split_direction
    return bench_transfer(direction, 'standard', load_shipped(split_direction(direction)[0], 'standard'), **VARIANTS[variant])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--direction', default='cocostuff->ade20k', help="'source->target' (default: cocostuff->ade20k)")
    p.add_argument('--rounds', type=int, default=6, help='timed rounds (default: 6)')
    p.add_argument('--stage', type=int, default=2, choices=[1, 2], help='transfer stage to time: 1 (new parts only) or 2 (default: 2)')
    p.add_argument('--threads', type=int, default=1, help='torch threads (default: 1)')
    p.add_argument('--vgg', action='store_true', help="also time the VGG perceptual term's forward + backward alone (default: off)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    built = {v: build(a.direction, v) for v in VARIANTS}
    trs, batch = {v: tr for v, (tr, _) in built.items()}, built['plain'][1]      # every variant's batch is the same (seed 0)
    tc = trs['plain'].cfg; H = tc.model.crop_size; W = int(round(H * tc.model.aspect_ratio))
    s = 0 if a.stage == 1 else trs['plain'].tcfg.stage1_iters
    first = {v: tr.step(batch, s) for v, tr in trs.items()}
    for k in ('G', 'D'):
        print(f"first-iteration loss {k}: " + ', '.join(f'{v} {first[v][k]:.6f}' for v in trs), flush=True)
    times, keys = {v: [] for v in trs}, list(trs)
    if a.vgg:
        tr = trs['plain']
        with torch.no_grad(): fake0 = tr.G(batch['label'])
        def vgg():
            fake = fake0.clone().requires_grad_(); tr.vgg_loss(fake, batch['image']).backward()
        times['vgg'], keys = [], keys + ['vgg']
    for r in range(a.rounds):
        for v in keys[r % len(keys):] + keys[:r % len(keys)]:
            t = time.perf_counter(); vgg() if v == 'vgg' else trs[v].step(batch, s + 1 + r); times[v].append(time.perf_counter() - t)
    med = {v: statistics.median(t) for v, t in times.items()}
    print(f"{a.direction}, stage {a.stage}, batch {tc.batch_size}, {H}x{W}, {torch.get_num_threads()} thread(s), {a.rounds} rounds")
    for v in trs: print(f"{v:6s} {med[v]:.3f} s/iter  speed-up over plain {med['plain'] / med[v]:.2f}x")
    if a.vgg: print(f"VGG term (fake with graph + real, backward to the fake batch) {med['vgg']:.3f} s: {100 * med['vgg'] / med['plain']:.0f} % of plain's step")
    return 0


if __name__ == '__main__':
    sys.exit(main())
