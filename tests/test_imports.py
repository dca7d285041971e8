"""Every cat_nb module imports on its own, in a fresh interpreter.

nbdev_test runs each notebook top to bottom, so a name that only exists as a notebook global (never exported)
passes there and fails for users of the package. Importing each module alone catches that."""
import pkgutil, subprocess, sys
import pytest
import cat_nb

MODULES = sorted(m.name for m in pkgutil.walk_packages(cat_nb.__path__, 'cat_nb.'))


def test_modules_found():
    assert {'cat_nb.core', 'cat_nb.cli', 'cat_nb._modidx'} <= set(MODULES)


@pytest.mark.parametrize('mod', MODULES)
def test_module_imports_alone(mod):
    r = subprocess.run([sys.executable, '-c', f'import {mod}'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f'import {mod} failed:\n{r.stderr[-3000:]}'


def test_modidx_lists_every_module():
    # _modidx is nbdev's symbol index; a module missing from it was not exported from a notebook
    from cat_nb._modidx import d
    exported = {k for k in d['syms']}
    assert {m for m in MODULES if m != 'cat_nb._modidx'} <= exported, set(MODULES) - exported


# The module graph: every `import` statement of the package, at module level and inside functions ------------------------
def import_graph() -> dict[str, set[str]]:
    "{module: the cat_nb modules it imports} over all import statements (a deprecated name's `moved_names` lookup is not one)."
    import ast, pathlib
    root = pathlib.Path(cat_nb.__file__).parent
    g = {}
    for p in sorted(root.rglob('*.py')):
        mod = 'cat_nb.' + '.'.join(p.relative_to(root).with_suffix('').parts)
        if mod.endswith('.__init__'): mod = mod[:-9]
        if mod == 'cat_nb._modidx': continue
        pkg = mod.rsplit('.', 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import): names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level: base = '.'.join(pkg.split('.')[:len(pkg.split('.')) - node.level + 1] + ([base] if base else []))
                names = [base] + [f'{base}.{a.name}' for a in node.names]
            else: continue
            deps |= {n for n in names if n.startswith('cat_nb.') and n != mod}
        g[mod] = deps
    mods = set(g)
    return {m: {d if d in mods else d.rsplit('.', 1)[0] for d in ds} & mods for m, ds in g.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    "One import cycle of `g` as [a, b, ..., a], or None."
    state, stack = {}, []
    def visit(m):
        state[m] = 1; stack.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1: return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)): return c
        state[m] = 2; stack.pop()
    for m in sorted(g):
        if m not in state and (c := visit(m)): return c
    return None


def test_find_cycle_finds_one():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set()}) is None


def test_no_import_cycles():
    "No two modules import each other, directly or around a circle, not even inside a function."
    c = find_cycle(import_graph())
    assert c is None, 'import cycle: ' + ' -> '.join(c)


def test_old_import_paths_still_work_with_a_warning():
    "Names that moved (to break a cycle) import from their old module for one release, with a DeprecationWarning."
    import importlib
    for old, name, new in (('cat_nb.metrics', 'evaluate_cli', 'cat_nb.evaluation'), ('cat_nb.affinity', 'affinity_cli', 'cat_nb.affinity_cli'),
                           ('cat_nb.transfer', 'transfer_cli', 'cat_nb.transfer_cli')):
        with pytest.warns(DeprecationWarning, match=f'moved to {new}.{name}'):
            assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)


if __name__ == '__main__':      # print the graph: python tests/test_imports.py
    g = import_graph()
    for m in sorted(g): print(f"{m.removeprefix('cat_nb.'):18} -> {', '.join(sorted(d.removeprefix('cat_nb.') for d in g[m])) or '-'}")
    print('cycle:', ' -> '.join(find_cycle(g) or ['none']))
