#!/usr/bin/env python
"""ADE20K (SceneParsing, 150 classes): download, extract and check.

    python data_scripts/ade20k.py --root DIR      # DIR/ADEChallengeData2016/{images,annotations}/{training,validation}

Then use it with `SegDataset(DIR, 'ade20k', ...)` or `cat-nb subset --data DIR --like ade20k ...`.
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import download, unzip, check, parser

URL = 'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip'   # public, about 923 MB

def prepare(root: Path, skip_download: bool = False) -> None:
    root = Path(root); z = root/'ADEChallengeData2016.zip'
    if not skip_download: download(URL, z)
    unzip(z, root, marker=root/'ADEChallengeData2016'/'annotations'/'validation')

def main(argv=None) -> int:
    a = parser('ade20k.py', __doc__.splitlines()[0]).parse_args(argv)
    if not a.check_only: prepare(a.root, a.skip_download)
    return check(Path(a.root), 'ade20k', a.full)

if __name__ == '__main__': sys.exit(main())
