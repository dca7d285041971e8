#!/usr/bin/env python
"""COCO-Stuff 164k (182 classes): download COCO 2017 images and the stuffthingmaps label PNGs, extract, check.

    python data_scripts/cocostuff.py --root DIR
    # DIR/{train2017,val2017}/*.jpg and DIR/stuffthingmaps_trainval2017/{train2017,val2017}/*.png

Label PNGs store id-1 with 255 for unlabeled; the readers turn them into ids 0..182 (0 = unlabeled) as OASIS does.
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import download, unzip, check, parser

URLS = {'train2017.zip': 'http://images.cocodataset.org/zips/train2017.zip',                    # about 18 GB
        'val2017.zip': 'http://images.cocodataset.org/zips/val2017.zip',                        # about 1 GB
        'stuffthingmaps_trainval2017.zip': 'http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip'}

def prepare(root: Path, skip_download: bool = False) -> None:
    root = Path(root)
    if not skip_download:
        for name, url in URLS.items(): download(url, root/name)
    unzip(root/'val2017.zip', root, marker=root/'val2017')
    unzip(root/'train2017.zip', root, marker=root/'train2017')
    unzip(root/'stuffthingmaps_trainval2017.zip', root/'stuffthingmaps_trainval2017', marker=root/'stuffthingmaps_trainval2017'/'val2017')

def main(argv=None) -> int:
    a = parser('cocostuff.py', __doc__.splitlines()[0]).parse_args(argv)
    if not a.check_only: prepare(a.root, a.skip_download)
    return check(Path(a.root), 'cocostuff', a.full)

if __name__ == '__main__': sys.exit(main())
