"The package's layers: every module imports, none imports one above it, and the serving path needs no torch."
import ast, importlib, subprocess, sys
import pytest
from conftest import ROOT

LAYERS = ['features', 'data', 'learner', 'bundle', 'train', 'evaluate', 'optimize', 'registry', 'retrain', 'batcher', 'requestlog', 'inputs', 'monitor', 'serve']

def _targets(node:ast.AST) -> list[str]:
    "The absolute names an import in a module of the package `opsbook` may load: `from .x import y` is `opsbook.x`, `opsbook.x.y`."
    if isinstance(node, ast.Import): return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom): return []
    base = 'opsbook' if node.level == 1 else None if node.level else ''   # our modules sit one level down
    if base is None: raise AssertionError(f"a relative import above the package: {ast.unparse(node)}")
    mod = '.'.join(p for p in (base, node.module or '') if p)
    return [mod] + [f"{mod}.{a.name}" for a in node.names]   # `from . import serve` imports a module too

def imports(mod:str) -> set[str]:
    "The opsbook modules `mod` imports, absolutely or relatively, at the top or inside functions."
    tree = ast.parse((ROOT/'opsbook'/f'{mod}.py').read_text())
    names = {t for n in ast.walk(tree) for t in _targets(n)}
    return {n.split('.')[1] for n in names if n.startswith('opsbook.') and n.split('.')[1] in LAYERS}

def test_every_module_is_in_the_layer_list_and_imports():
    found = {p.stem for p in (ROOT/'opsbook').glob('*.py') if not p.stem.startswith('_')}
    assert found == set(LAYERS)
    for m in LAYERS: importlib.import_module(f'opsbook.{m}')

@pytest.mark.parametrize('mod', LAYERS)
def test_no_module_imports_one_above_it(mod):
    above = set(LAYERS[LAYERS.index(mod):])
    assert not imports(mod) & above, f"opsbook.{mod} imports {sorted(imports(mod) & above)}, which sit above it (or are itself)"

def test_no_import_cycle():
    graph = {m: imports(m) for m in LAYERS}
    def visit(m, path):
        for n in graph[m]:
            assert n not in path, f"import cycle: {' -> '.join(path + [n])}"
            visit(n, path + [n])
    for m in LAYERS: visit(m, [m])

def test_serving_and_monitoring_import_no_torch_or_fastai():
    code = ("import sys, opsbook.serve, opsbook.monitor\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'fastai'}))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == '[]'

def test_relative_imports_are_edges():
    "The package imports itself relatively: the checks above must see those edges, or they check nothing."
    test = lambda code: {n.split('.')[1] for t in ast.walk(ast.parse(code)) for n in _targets(t) if n.startswith('opsbook.')}
    assert test('from .serve import create_app') == {'serve'}
    assert test('def f():\n    from . import monitor') >= {'monitor'}
    assert test('from opsbook.bundle import load_bundle') == {'bundle'}
    assert {'bundle', 'data', 'features'} <= imports('evaluate')   # today's edges, all written `from .x import`
