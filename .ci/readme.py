"Write README.md from nbs/index.ipynb: the Quarto-free stand-in for `nbdev-readme`, which needs the Quarto binary."
import re
from pathlib import Path
from fastcore.nbio import read_nb

root = Path(__file__).resolve().parent.parent
link = re.compile(r'\]\((\w+\.ipynb|images/[^)]+)\)')

def cell_md(c) -> str:
    if c.cell_type == 'markdown': return link.sub(r'](nbs/\1)', c.source)
    if c.source.lstrip().startswith('#| hide'): return ''
    src = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|'))
    outs = [''.join(o['data']['text/plain']) if 'data' in o else ''.join(o.get('text', '')) for o in c.get('outputs', []) if o.get('name') != 'stderr']
    return '\n\n'.join([f"```python\n{src}\n```"] + [f"```\n{o.rstrip()}\n```" for o in outs if o.strip()])

nb = read_nb(root/'nbs'/'index.ipynb')
title, *rest = nb.cells
head = title.source.replace('> ', '', 1).replace('\n> ', ' ')
body = [cell_md(c) for c in rest]
(root/'README.md').write_text('\n\n'.join([head, *filter(None, body)]) + '\n')
