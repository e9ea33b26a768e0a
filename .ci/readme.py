"Write README.md from nbs/index.ipynb: the Quarto-free stand-in for `nbdev-readme`, which needs the Quarto binary."
import re
from pathlib import Path
from fastcore.nbio import read_nb

root = Path(__file__).resolve().parent.parent
link = re.compile(r'\]\(([\w-]+\.(?:ipynb|qmd)|images/[^)]+)\)')

def cell_md(c) -> str:
    if c.cell_type == 'markdown': return link.sub(r'](nbs/\1)', c.source)
    if c.source.lstrip().startswith('#| hide'): return ''
    src = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|'))
    outs = c.get('outputs', [])
    md = [''.join(o['data']['text/markdown']) for o in outs if 'text/markdown' in o.get('data', {})]
    if md: return '\n\n'.join(md)
    txt = [''.join(o['data']['text/plain']) if 'data' in o else ''.join(o.get('text', '')) for o in outs if o.get('name') != 'stderr']
    code = [] if '#| echo: false' in c.source else [f"```python\n{src}\n```"]
    return '\n\n'.join(code + [f"```\n{o.rstrip()}\n```" for o in txt if o.strip()])

nb = read_nb(root/'nbs'/'index.ipynb')
title, *rest = nb.cells
head = title.source.replace('> ', '', 1).replace('\n> ', ' ')
body = [cell_md(c) for c in rest]
(root/'README.md').write_text('\n\n'.join([head, *filter(None, body)]) + '\n')
