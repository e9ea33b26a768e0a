"The docs site's sources: every notebook is in the sidebar, every relative link resolves, nbdev can process them."
import json, re, subprocess
import yaml
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
