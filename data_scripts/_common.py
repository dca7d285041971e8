"""Shared helpers of the dataset scripts: resumable downloads, safe unzipping, layout checks (used by ade20k.py, cocostuff.py, cityscapes.py)."""
from __future__ import annotations
import argparse, shutil, sys, urllib.request, zipfile
from pathlib import Path

EXPECTED = {'ade20k': {'train': 20210, 'val': 2000}, 'cocostuff': {'train': 118287, 'val': 5000},
            'cityscapes': {'train': 2975, 'val': 500}}

def download(url: str, dest: Path) -> Path:
    "Download `url` to `dest` with a progress bar; an interrupted download restarts from a `.part` file, a finished one is kept."
    from tqdm.auto import tqdm
    dest = Path(dest)
    if dest.exists(): print(f'already downloaded: {dest}'); return dest
    dest.parent.mkdir(parents=True, exist_ok=True); part = dest.with_name(dest.name + '.part')
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={'Range': f'bytes={have}-'} if have else {})
    try: resp = urllib.request.urlopen(req, timeout=60)
    except Exception as e: raise SystemExit(f'cannot download {url}: {e}\n(no internet? download it by hand into {dest.parent} and rerun with --skip-download)')
    if have and resp.status != 206: have = 0                          # server ignored the range: start over
    total = int(resp.headers.get('Content-Length', 0)) + have
    with open(part, 'ab' if have else 'wb') as f, tqdm(total=total or None, initial=have, unit='B', unit_scale=True, desc=dest.name) as bar:
        while chunk := resp.read(1 << 20): f.write(chunk); bar.update(len(chunk))
    part.rename(dest); return dest

def unzip(zpath: Path, into: Path, strip: str | None = None, marker: Path | None = None) -> None:
    "Extract `zpath` into `into` (optionally dropping a leading folder `strip`), skipping the work if `marker` exists."
    from tqdm.auto import tqdm
    if marker is not None and Path(marker).exists(): print(f'already extracted: {marker}'); return
    zpath = Path(zpath)
    if not zpath.exists(): raise SystemExit(f'archive not found: {zpath}')
    try: zf = zipfile.ZipFile(zpath)
    except zipfile.BadZipFile: raise SystemExit(f'{zpath} is not a valid zip (truncated download?); delete it and rerun')
    into = Path(into).resolve()
    with zf:
        for m in tqdm(zf.infolist(), desc=f'extracting {zpath.name}', unit='file'):
            name = m.filename
            if strip:
                if not name.startswith(strip.rstrip('/') + '/'): continue
                name = name[len(strip.rstrip('/')) + 1:]
            if not name or name.endswith('/'): continue
            out = (into/name).resolve()
            if into not in out.parents: raise SystemExit(f'{zpath}: refusing to extract {m.filename} outside {into}')
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(out, 'wb') as dst: shutil.copyfileobj(src, dst)

def check(root: Path, like: str, full: bool = False, n_sample: int = 50) -> int:
    "Check the layout (pairing of every image and label) and read a sample (all with `full`); prints a summary, returns 0 or 1."
    import random
    from cat_nb.data import SegDataset, check_dataset, DatasetError
    try:
        if full: rep = check_dataset(root, like)
        else:
            rep = {}
            for split in ('train', 'val'):
                ds = SegDataset(root, like, split, train=False)
                for i in random.Random(0).sample(range(len(ds)), min(n_sample, len(ds))): ds.load(i)
                rep[split] = dict(n=len(ds))
    except DatasetError as e: print(f'FAILED: {e}', file=sys.stderr); return 1
    ok = True
    for split, r in rep.items():
        exp = EXPECTED[like][split]
        print(f'{like} {split}: {r["n"]} image/label pairs (official release: {exp})' + ('' if full else f', {min(n_sample, r["n"])} read'))
        ok &= r['n'] == exp
    if not ok: print(f'WARNING: counts differ from the official {like} release (fine for a subset or SynthScenes)')
    print(f'{like} at {root}: OK' + ('' if full else ' (sampled; --full reads every file)'))
    return 0

def parser(prog: str, desc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=desc)
    ap.add_argument('--root', required=True, help='dataset root to create or check')
    ap.add_argument('--skip-download', action='store_true', help='use archives already placed in --root')
    ap.add_argument('--check-only', action='store_true', help='only check an existing dataset')
    ap.add_argument('--full', action='store_true', help='read every image and label when checking (slow)')
    return ap
