#!/usr/bin/env python
"""Cityscapes (gtFine, 34 label ids): extract the two official archives and check. Downloading needs a login.

Manual step (Cityscapes requires an account and accepting its license):
  1. Register at https://www.cityscapes-dataset.com/register/ and log in.
  2. From https://www.cityscapes-dataset.com/downloads/ download
       gtFine_trainvaltest.zip       (241 MB, package id 1)
       leftImg8bit_trainvaltest.zip  (11 GB,  package id 3)
     (or with the official tool: `pip install cityscapesscripts; csDownload gtFine_trainvaltest.zip leftImg8bit_trainvaltest.zip`).
  3. Put both zips in DIR and run:  python data_scripts/cityscapes.py --root DIR
     -> DIR/leftImg8bit/{train,val}/CITY/*_leftImg8bit.png and DIR/gtFine/{train,val}/CITY/*_gtFine_labelIds.png
"""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import unzip, check, parser

ZIPS = ('gtFine_trainvaltest.zip', 'leftImg8bit_trainvaltest.zip')

def prepare(root: Path) -> None:
    root = Path(root)
    missing = [z for z in ZIPS if not (root/z).exists()]
    if missing and not ((root/'gtFine').is_dir() and (root/'leftImg8bit').is_dir()):
        raise SystemExit(f'missing {", ".join(missing)} in {root}.\n' + __doc__[__doc__.index('Manual step'):])
    unzip(root/'gtFine_trainvaltest.zip', root, marker=root/'gtFine'/'val')
    unzip(root/'leftImg8bit_trainvaltest.zip', root, marker=root/'leftImg8bit'/'val')

def main(argv=None) -> int:
    a = parser('cityscapes.py', __doc__.splitlines()[0]).parse_args(argv)
    if not a.check_only: prepare(a.root)
    return check(Path(a.root), 'cityscapes', a.full)

if __name__ == '__main__': sys.exit(main())
