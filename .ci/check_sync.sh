#!/usr/bin/env bash
# Fails when cat_nb/ is not what nbs/ export, or when a notebook in nbs/ or reports/ is not clean.
# Works on dirty trees too: it compares before/after copies instead of asking git.
set -euo pipefail
BIN=${1:-.venv/bin}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "== nbdev_export leaves cat_nb/ unchanged"
cp -r cat_nb "$tmp/cat_nb"
"$BIN/nbdev_export"
if ! diff -r -q -x __pycache__ "$tmp/cat_nb" cat_nb; then
  echo "FAIL: cat_nb/ was not what nbs/ export (now re-exported: review and commit cat_nb/; never edit it by hand)"; exit 1
fi
echo "== nbdev_clean leaves nbs/ and reports/ unchanged"
mapfile -t nbs < <({ find nbs -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*'; ls reports/*.ipynb 2>/dev/null; } | sort)
for f in "${nbs[@]}"; do mkdir -p "$tmp/nb/$(dirname "$f")"; cp "$f" "$tmp/nb/$f"; done
"$BIN/nbdev_clean"
for f in reports/*.ipynb; do [ -e "$f" ] && "$BIN/nbdev_clean" --fname "$f"; done  # top level only: reports/out keeps its outputs
bad=0
for f in "${nbs[@]}"; do cmp -s "$f" "$tmp/nb/$f" || { echo "not clean (now cleaned, review and commit): $f"; bad=1; }; done
[ $bad -eq 0 ] || { echo "FAIL: run nbdev_clean (or install the hooks: nbdev_install_hooks)"; exit 1; }
echo "ok: library in sync, notebooks clean"
