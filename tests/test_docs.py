"The docs site's sources: every notebook is in the sidebar, every relative link resolves, nbdev can process them."
import importlib.util, json, re, subprocess
import pytest, yaml
from conftest import ROOT

NBS = ROOT/'nbs'

def sidebar_files(node) -> list:
    if isinstance(node, str): return [node]
    if isinstance(node, dict): return [f for v in node.values() for f in sidebar_files(v)]
    if isinstance(node, list): return [f for v in node for f in sidebar_files(v)]
    return []

def test_sidebar_lists_every_notebook_and_only_existing_ones():
    listed = [f for f in sidebar_files(yaml.safe_load((NBS/'sidebar.yml').read_text())) if f.endswith('.ipynb')]
    assert all((NBS/f).exists() for f in listed)
    assert sorted(listed) == sorted(p.name for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))

def test_relative_links_in_notebooks_resolve():
    link = re.compile(r'\]\(([^)#\s]+)\)')
    for nb in NBS.glob('*.ipynb'):
        for c in json.loads(nb.read_text())['cells']:
            if c['cell_type'] != 'markdown': continue
            for target in link.findall(''.join(c['source'])):
                if '://' not in target: assert (NBS/target).exists(), f'{nb.name} links to missing {target}'

def test_nbdev_processes_the_notebooks_for_quarto(tmp_path):
    r = subprocess.run(['nbdev-proc-nbs'], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert {p.name for p in (ROOT/'_proc').glob('*.ipynb')} >= {p.name for p in NBS.glob('[0-9]*.ipynb')}

FIGURE = re.compile(r'\d[\d,.]*\s?(?:×|x\b|%|req/s|ms\b|MB\b|GB\b|s\b)')

@pytest.fixture(scope='module')
def readme():
    "README.md's text, index.ipynb's text and the Markdown blocks its generated cells make, as `.ci/readme.py` makes them now."
    spec = importlib.util.spec_from_file_location('readme', ROOT/'.ci'/'readme.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build()

def test_readme_and_index_are_made_from_the_bench_json_now(readme):
    text, nb, _ = readme
    assert (ROOT/'README.md').read_text() == text, 'README.md is stale: run python .ci/readme.py and commit it'
    assert (NBS/'index.ipynb').read_text() == nb, "index.ipynb's generated outputs are stale: run python .ci/readme.py"

def test_every_figure_in_the_readme_is_generated(readme):
    "A measured figure (×, %, req/s, ms, MB, s) appears only in the blocks made from bench/*.json, never typed in prose."
    text, _, made = readme
    for block in made: text = text.replace(block, '')
    prose = re.sub(r'```.*?```', '', text, flags=re.S)
    assert not FIGURE.findall(prose), f'typed figures in the README: {FIGURE.findall(prose)}; make them in an `#| echo: false` cell of nbs/index.ipynb from bench/*.json'
    serve = json.loads((ROOT/'bench'/'serve.json').read_text())
    rps = {r['workers']: r['rps'] for r in serve['results']['digits']['rows'] if r['server'].startswith('opsbook-serve') and r['endpoint'] == 'POST /predict'}
    assert f"{rps[2] / rps[1]:.2f}× the predictions of one" in ''.join(made)   # the figure is the JSON's
