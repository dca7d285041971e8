"""Fingerprints of every training path after a few steps: the loss records and the sha256 of G, D and EMA weights.

Run it at two revisions and diff the JSON: a refactor that claims "behaviour unchanged" must print the same fingerprints.
    PYTHONPATH=<checkout> python benchmarks/refactor_identity.py > before.json
Methods: source training (OASIS), every transfer method (finetuned), CAT training-free, CDC and SSR regularizers."""
import hashlib, json, sys, tempfile, warnings
from pathlib import Path

import torch

warnings.simplefilter('ignore', DeprecationWarning)
torch.set_num_threads(1)


def sha(sd: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode()); h.update(sd[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(run: Path) -> dict:
    from cat_nb.core import RunDir
    r = RunDir(run); st = r.load_latest()
    losses = [{k: v for k, v in m.items() if k not in ('time', 'it_per_s', 'seconds', 'device', 'eval_seconds')} for m in r.metrics()]
    return dict(step=st['step'], G=sha(st['G']), D=sha(st['D']), EMA=sha(st['EMA']), losses=losses)


def main() -> dict:
    from cat_nb.synth import write_synth
    from cat_nb.train import train_config, train_source
    try: from cat_nb.transfer_oasis import transfer_config      # after the split
    except ImportError: from cat_nb.transfer import transfer_config
    from cat_nb.transfer import transfer, METHODS, resolve_affinity
    d = Path(tempfile.mkdtemp())
    data = write_synth(d/'ade', 'ade20k', n_train=6, n_val=2, size=32, progress=False)
    tgt = write_synth(d/'coco', 'cocostuff', n_train=6, n_val=2, size=32, progress=False)
    out = {}
    train_source(data, train_config('ade20k', 'quick', iters=4, ckpt_every=4, sample_every=4, log_every=1, batch_size=2), d/'src', 'cpu', progress=False)
    out['source'] = fingerprint(d/'src')
    runs = [(m, {}) for m in METHODS] + [('cat', dict(training_free=True)), ('cat', dict(regularizer='cdc', lambda_reg=1.0)),
                                          ('cat', dict(regularizer='ssr', lambda_reg=1.0))]
    for m, kw in runs:
        cfg = transfer_config(m, 'cocostuff', torch.load(d/'src'/'checkpoints'/'step_00000004.pt', weights_only=False)['model'] if m != 'scratch' else None,
                              'quick', iters=4, stage1_iters=2, batch_size=2, log_every=1, ckpt_every=4, sample_every=4, **kw)
        name = m + ''.join(f'_{k}={v}' for k, v in kw.items())
        A = resolve_affinity('cocostuff', 'ade20k', method='synth-gt')[0] if m == 'cat' else None
        transfer(tgt, cfg, d/name, source=d/'src' if m != 'scratch' else None, affinity=A, device='cpu', progress=False)
        out[name] = fingerprint(d/name)
    return out


if __name__ == '__main__':
    json.dump(main(), sys.stdout, indent=1); print()
