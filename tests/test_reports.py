"""The report notebooks as `cat-nb reproduce` runs them: parameters cells, one report end to end, the whole quick suite (slow)."""
import json, os, subprocess, time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, cat_nb_exe

REPORTS = sorted((ROOT/'reports').glob('*.ipynb'))
OURS = ('table1', 'table2', 'table3', 'table4', 'figure3', 'figure4', 'affinity')
CSV_COLUMNS = {'direction', 'method', 'affinity', 'training_free', 'seed', 'n_images', 'fid', 'kid', 'miou'}


def _env(tmp_path):
    "Every cache in tmp_path (pipeline artefacts, segmenters, FID statistics); pretrained weights stay where torch keeps them."
    return dict(os.environ, CAT_NB_PIPELINE=str(tmp_path/'pipeline'), CAT_NB_HOME=str(tmp_path/'home'), OMP_NUM_THREADS='1')


def _reproduce(tmp_path, *args, timeout=1800):
    t0 = time.time()
    r = subprocess.run([cat_nb_exe(), 'reproduce', '--preset', 'quick', '--out', str(tmp_path/'out'), *args],
                       capture_output=True, text=True, timeout=timeout, env=_env(tmp_path), cwd=ROOT)
    return r, time.time() - t0


def test_every_report_has_one_typed_commented_parameters_cell():
    import papermill as pm
    names = {p.stem for p in REPORTS}
    assert set(OURS) <= names, sorted(set(OURS) - names)
    for nb in REPORTS:
        cells = json.loads(nb.read_text())['cells']
        tagged = [c for c in cells if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert len(tagged) == 1, (nb.name, len(tagged))
        params = pm.inspect_notebook(str(nb))
        assert {'preset', 'out_dir'} <= set(params), (nb.name, sorted(params))
        for p in params.values():
            assert p['inferred_type_name'] not in ('None', ''), (nb.name, p)      # typed
            assert p['help'].strip(), (nb.name, p['name'])                        # commented
        assert all(not c.get('outputs') for c in cells if c['cell_type'] == 'code'), f'{nb.name} is committed with outputs'


def test_table1_end_to_end_with_papermill(tmp_path):
    "One report at quick with a reduced plan, through the CLI: its CSV has the long-format columns, a second call is cached."
    args = ['--only', 'table1', '-p', "directions=['ade20k->cityscapes']", '-p', "affinities=['random', 'text']", '-p', 'piti_directions=[]',
            '-p', 'workers=1']
    r, sec = _reproduce(tmp_path, *args)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    out = tmp_path/'out'
    runs = pd.read_csv(out/'table1'/'table1.csv')
    assert CSV_COLUMNS <= set(runs.columns), sorted(CSV_COLUMNS - set(runs.columns))
    assert len(runs) == 2 and set(runs.affinity) == {'random', 'text'} and set(runs.method) == {'cat', 'cat-random'}
    assert (runs.direction == 'ade20k->cityscapes').all() and not runs.training_free.any()
    assert runs[['fid', 'kid', 'miou']].notna().all().all() and (runs.fid > 0).all()
    md = (out/'table1'/'table1.md').read_text()
    assert 'FID paper' in md and 'compare orderings' in md
    assert (out/'table1'/'table1.png').stat().st_size > 0
    summary = (out/'SUMMARY.md').read_text()
    assert '[table1](table1.ipynb)' in summary and 'Table 1' in summary
    assert "every report's transfer runs: 2 distinct" in r.stdout and 'the 2 distinct transfer runs' in summary   # built before the report ran
    r2, sec2 = _reproduce(tmp_path, *args)
    assert r2.returncode == 0 and 'already done, skipped' in r2.stdout, r2.stdout[-2000:]
    print(f'table1 (reduced plan): {sec:.0f}s, cached rerun {sec2:.0f}s')


def test_reproduce_rejects_bad_report_parameter_values(tmp_path):
    r, _ = _reproduce(tmp_path, '--only', 'table1', '-p', "directions=['coco->ade']")
    # refused before any work (issue 18): a usage error naming the bad value, nothing built or written
    assert r.returncode == 2 and "unknown dataset 'coco'" in r.stderr and not (tmp_path/'out').exists()


@pytest.mark.slow
def test_full_quick_reproduce(tmp_path):
    "`cat-nb reproduce --preset quick`: every report runs, writes its CSV (long format) and figures; a rerun is all cached."
    r, sec = _reproduce(tmp_path, timeout=3600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    out = tmp_path/'out'
    for name in ('table1', 'table2', 'table3', 'table4', 'figure4'):
        runs = pd.read_csv(out/name/f'{name}.csv')
        assert CSV_COLUMNS <= set(runs.columns) and len(runs) > 0, name
        assert runs[['fid', 'kid', 'miou']].notna().all().all(), name
        assert (out/name/f'{name}.md').exists() and list((out/name).glob('*.png')), name
    for name in ('table1', 'table3'):                       # their PITI rows, in a table of their own
        runs = pd.read_csv(out/name/f'{name}.csv'); piti = runs[runs.backbone == 'piti']
        assert set(piti.affinity) == {'random', 'text', 'segmentation', 'vision', 'combination'} and piti.fid.gt(0).all(), name
        md = (out/name/f'{name}_piti.md').read_text()
        assert 'PITI at this preset' in md and 'FID paper' in md and (out/name/f'{name}_piti.png').exists(), name
    assert (pd.read_csv(out/'table3'/'table3.csv').query("backbone == 'piti'").training_free.sum() == 5)
    f4 = pd.read_csv(out/'figure4'/'figure4.csv')
    assert f4.iterations.notna().all() and set(f4.method) == {'cat', 'cat-random'}
    assert len(list((out/'figure3').glob('figure3_*.png'))) == 3
    assert (out/'affinity'/'affinity.csv').exists()
    summary = (out/'SUMMARY.md').read_text()
    for name in OURS: assert f'[{name}]({name}.ipynb)' in summary
    r2, sec2 = _reproduce(tmp_path)
    assert r2.returncode == 0 and r2.stdout.count('already done, skipped') == len(REPORTS)
    print(f'quick reproduce: {sec:.0f}s wall; cached rerun {sec2:.0f}s')
