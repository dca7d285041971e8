"""One OASIS training iteration, cat_nb against the official code, timed in the same process on the same config.

    python benchmarks/bench_vs_official.py --official /path/to/OASIS          # a checkout of github.com/boschresearch/OASIS
    python benchmarks/bench_vs_official.py --official ~/OASIS --rounds 8 --threads 1 --json out.json
    python benchmarks/bench_vs_official.py --official ~/OASIS --variants plain,fast          # fewer cat_nb variants

The official code is read from the path you pass (it is never copied into this repository). Both sides get the same
configuration (ADE20K, batch 4, 64 px, channels_G 16, the official D width 64, LabelMix, EMA, no VGG term: the official
default) and the same weights; the script first checks that their forward passes agree (G on the same noise, D on the
same image), then times rounds that run one iteration of every side in rotating order, so that all see the same machine load.
cat_nb runs in three variants: `plain` (the presets' settings), `channels_last`, and `fast` (channels_last + d_batched); two probes on
top of `fast` can be added with --variants: `fast+fused_adam` (Adam's fused CPU kernel) and `fast+compile` (torch.compile).
It prints the median seconds per iteration of each side, the speed-up official / cat_nb, and each step's achieved FLOP/s
(torch.utils.flop_counter) over the dense fp32 matmul FLOP/s measured in the same run. The counter gives direct-
convolution FLOPs; oneDNN's 3x3 kernels can need fewer (Winograd), so the fraction can pass 100 %. Not a test: timings
depend on the machine and its load; compare ratios, not seconds, across runs.
"""
from __future__ import annotations
import argparse, json, statistics, sys, time
from types import SimpleNamespace

import torch
import torch.nn.functional as F


def matmul_flops(n: int = 2048, reps: int = 5) -> float:
    "Dense fp32 matmul FLOP/s on the CPU with the current thread count (best of `reps`)."
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float('inf')
    for _ in range(reps + 1):
        t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def official_opt(a) -> SimpleNamespace:
    "The options `config.read_arguments` would produce for ADE20K training on the CPU, plus what the ADE20K loader sets."
    return SimpleNamespace(
        phase='train', gpu_ids='-1', dataset_mode='ade20k', batch_size=a.batch, crop_size=a.size, load_size=a.size, aspect_ratio=1.0,
        label_nc=150, contain_dontcare_label=True, semantic_nc=151, no_spectral_norm=False, num_res_blocks=6, channels_G=a.channels_G,
        channels_D=a.channels_D, param_free_norm='syncbatch', spade_ks=3, no_EMA=False, EMA_decay=0.9999, no_3dnoise=False, z_dim=64,
        lr_g=1e-4, lr_d=4e-4, beta1=0.0, beta2=0.999, add_vgg_loss=False, lambda_vgg=10.0, no_balancing_inloss=False, no_labelmix=False,
        lambda_labelmix=10.0, continue_train=False, checkpoints_dir='/nonexistent', name='bench',
        freq_print=1000, freq_fid=5000, freq_save_ckpt=20000, freq_save_latest=10000)


class Official:
    "The official training iteration (train.py's loop body, without logging/saving) on the official modules."
    def __init__(self, path: str, opt):
        sys.path.insert(0, path)
        import models.models as models, models.losses as losses, utils.utils as utils
        self.models, self.utils, self.opt = models, utils, opt
        self.net = models.OASIS_model(opt)          # on the CPU, put_on_multi_gpus sets net.module = net: a cycle that the
        self.model = SimpleNamespace(module=self.net)  # FLOP counter's module walk cannot take, so the holder is outside the module
        self.losses = losses.losses_computer(opt)
        self.optG = torch.optim.Adam(self.model.module.netG.parameters(), lr=opt.lr_g, betas=(opt.beta1, opt.beta2))
        self.optD = torch.optim.Adam(self.model.module.netD.parameters(), lr=opt.lr_d, betas=(opt.beta1, opt.beta2))

    def step(self, data: dict, it: int = 1):
        image, label = self.models.preprocess_input(self.opt, dict(data))
        m, net = self.model, self.net
        net.netG.zero_grad()
        loss_G, _ = net(image, label, 'losses_G', self.losses); loss_G.mean().backward(); self.optG.step()
        net.netD.zero_grad()
        loss_D, _ = net(image, label, 'losses_D', self.losses); loss_D.mean().backward(); self.optD.step()
        self.utils.update_EMA(m, it, None, self.opt)      # it not a multiple of freq_print & co: the BN-stats refresh does not run
        return loss_G.item(), loss_D.item()


def build_ours(a):
    from cat_nb.train import train_config, OASISTrainer
    cfg = train_config('ade20k', 'standard', model=dict(channels_G=a.channels_G, channels_D=a.channels_D, crop_size=a.size, spade_hidden=128, z_dim=64),
                       batch_size=a.batch, lambda_vgg=0.0, lr_g=1e-4, ema_decay=0.9999, init_gain=0.02, channels_last=a.channels_last, d_batched=a.d_batched)
    return OASISTrainer(cfg, torch.device('cpu'))


@torch.no_grad()
def check_forward(off: Official, tr, data: dict) -> dict:
    "Copy the official weights into cat_nb's G and D (same state_dict layout) and compare outputs on the same input and noise."
    net = off.net
    tr.G.load_state_dict(net.netG.state_dict()); tr.D.load_state_dict(net.netD.state_dict())
    tr.EMA.load_state_dict(net.netEMA.state_dict())
    net.netG.eval(); tr.G.eval()         # G with its BN statistics; D in train mode (spectral norm's power step, as in training)
    _, lab1h = off.models.preprocess_input(off.opt, dict(data))
    torch.manual_seed(0); y_off = net.netG(lab1h)
    torch.manual_seed(0); z = torch.randn(lab1h.shape[0], off.opt.z_dim); y_ours = tr.G(data['label'][:, 0].long(), z)
    d_off, d_ours = net.netD(data['image']), tr.D(data['image'])
    net.netG.train(); tr.G.train()
    return dict(G_max_abs_diff=float((y_off - y_ours).abs().max()), D_max_abs_diff=float((d_off - d_ours).abs().max()))


def step_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc: fn()
    return fc.get_total_flops()


VARIANTS = {'plain': dict(channels_last=False, d_batched=False), 'channels_last': dict(channels_last=True, d_batched=False),
            'fast': dict(channels_last=True, d_batched=True),      # fast = channels_last + d_batched
            # probes on top of `fast`, not TrainConfig fields (session 10: neither pays):
            'fast+fused_adam': dict(channels_last=True, d_batched=True, probe='fused_adam'),   # torch.optim.Adam(fused=True) for G and D
            'fast+compile': dict(channels_last=True, d_batched=True, probe='compile')}         # torch.compile on G's and D's forward


def apply_probe(tr, probe: str | None):
    "Turn a `fast` trainer into one of the probe variants (in place); the forward passes stay the modules' own."
    if probe == 'fused_adam':
        c = tr.cfg
        tr.optG = torch.optim.Adam(tr.G.parameters(), lr=c.lr_g, betas=(c.beta1, c.beta2), fused=True)
        tr.optD = torch.optim.Adam(tr.d_trainable, lr=c.lr_d, betas=(c.beta1, c.beta2), fused=True)
    elif probe == 'compile':   # the forward methods, so that state_dict keys (EMA, checkpoints) stay unprefixed; compiled on first use
        tr.G.forward = torch.compile(tr.G.forward); tr.D.forward = torch.compile(tr.D.forward)
    elif probe is not None: raise ValueError(f'unknown probe {probe!r}')
    return tr


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--official', required=True, help='path of a checkout of github.com/boschresearch/OASIS')
    p.add_argument('--rounds', type=int, default=6, help='timed rounds; each times one iteration of every side, in rotating order (default: 6)')
    p.add_argument('--warmup', type=int, default=1, help='untimed iterations of each side first (default: 1)')
    p.add_argument('--threads', type=int, default=1, help='torch threads (default: 1)')
    p.add_argument('--batch', type=int, default=4, help='batch size (default: 4)')
    p.add_argument('--size', type=int, default=64, help='image size in pixels (default: 64)')
    p.add_argument('--channels-G', dest='channels_G', type=int, default=16, help='G width (default: 16)')
    p.add_argument('--channels-D', dest='channels_D', type=int, default=64, help='D width (default: 64, the official value)')
    p.add_argument('--variants', default='plain,channels_last,fast',
                   help="cat_nb variants to time: plain, channels_last, fast (= channels_last + d_batched), fast+fused_adam, fast+compile "
                        "(default: the first three)")
    p.add_argument('--json', help='write the results here')
    a = p.parse_args(argv)
    names = [v.strip() for v in a.variants.split(',') if v.strip()]
    if bad := [v for v in names if v not in VARIANTS]: p.error(f"unknown variant(s) {bad}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(a.threads); torch.manual_seed(0)
    off = Official(a.official, official_opt(a))
    ours = {n: build_ours(argparse.Namespace(**{**vars(a), **VARIANTS[n]})) for n in names}
    for n, tr in ours.items(): apply_probe(tr, VARIANTS[n].get('probe'))
    g = torch.Generator().manual_seed(0)
    data = dict(image=torch.rand(a.batch, 3, a.size, a.size, generator=g) * 2 - 1,
                label=torch.randint(0, 151, (a.batch, 1, a.size, a.size), generator=g).float())
    ours_batch = dict(image=data['image'], label=data['label'][:, 0].long())
    eq = {n: check_forward(off, tr, data) for n, tr in ours.items()}
    for n, e in eq.items():
        print(f"forward pass ({n}), same weights and noise: G max |diff| {e['G_max_abs_diff']:.2e}, D max |diff| {e['D_max_abs_diff']:.2e}", flush=True)
    fns = {'official': lambda: off.step(data), **{n: (lambda tr=tr: tr.step(ours_batch, 1)) for n, tr in ours.items()}}
    for n in names:                 # compiled probes: the training graphs compile here, before anything is counted or timed
        if VARIANTS[n].get('probe') == 'compile':   # (check_forward above already compiled the eval-mode/D graphs it ran)
            t = time.perf_counter(); fns[n](); fns[n](); print(f'{n}: first two training steps {time.perf_counter() - t:.0f} s (compiling)', flush=True)
    flops = {k: step_flops(f) for k, f in fns.items()}
    for _ in range(a.warmup):
        for f in fns.values(): f()
    times, mm = {k: [] for k in fns}, []
    keys = list(fns)
    for r in range(a.rounds):
        if r % 2 == 0: mm.append(matmul_flops())               # the peak, sampled through the run (load changes)
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:  # rotate the order so no side always runs first
            t = time.perf_counter(); fns[k](); times[k].append(time.perf_counter() - t)
    peak = max(mm)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = dict(config=dict(vars(a)), threads=torch.get_num_threads(), torch=torch.__version__, forward=eq, matmul_GFLOPs=round(peak / 1e9, 1),
               sides={k: dict(s_per_iter=round(med[k], 4), all_s=[round(t, 4) for t in times[k]], GFLOP=round(flops[k] / 1e9, 3),
                              frac_of_matmul=round(flops[k] / med[k] / peak, 4), speedup_vs_official=round(med['official'] / med[k], 3))
                      for k in fns})
    print(f"dense fp32 matmul peak {res['matmul_GFLOPs']} GFLOP/s ({res['threads']} thread(s), best of {len(mm)} samples)")
    for k, v in res['sides'].items():
        print(f"{k:14s} {v['s_per_iter']:7.3f} s/iter  {v['GFLOP']:8.1f} GFLOP  {100 * v['frac_of_matmul']:5.1f}% of matmul peak  "
              f"speed-up vs official {v['speedup_vs_official']:.2f}x")
    if a.json:
        with open(a.json, 'w') as f: json.dump(res, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
