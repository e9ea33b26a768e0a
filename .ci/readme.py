"""Write README.md from nbs/index.ipynb: the Quarto-free stand-in for `nbdev-readme`, which needs the Quarto binary.

The index's `#| echo: false` cells make what the README and the site quote (the parameters table, figures read from
bench/*.json): they are run again here, from nbs/ as nbdev-test runs them, and their fresh Markdown replaces the
outputs stored in the notebook, so a figure is never older than its JSON. `--check` writes nothing and exits 1
when README.md or those outputs are stale."""
import ast, contextlib, io, json, os, re, sys
from pathlib import Path
from fastcore.nbio import read_nb

root = Path(__file__).resolve().parent.parent
index = root/'nbs'/'index.ipynb'
link = re.compile(r'\]\(([\w-]+\.(?:ipynb|qmd)|images/[^)]+)\)')

def generated(c) -> bool:
    "Whether `c` is a cell whose output is made here: code shown only by its Markdown output."
    return c.cell_type == 'code' and re.search(r'^#\|\s*echo:\s*false', c.source, re.M) is not None

def run_cells(cells) -> list[str]:
    "The Markdown that each of `cells` shows, run in order in one namespace from nbs/ (the last line is the value)."
    ns, out, cwd = {}, [], os.getcwd()
    os.chdir(root/'nbs')
    try:
        for c in cells:
            tree = ast.parse(c.source)
            *body, last = tree.body
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                exec(compile(ast.Module(body, []), str(index), 'exec'), ns)
                val = eval(compile(ast.Expression(last.value), str(index), 'eval'), ns)
            out.append(val.data)
    finally: os.chdir(cwd)
    return out

def refreshed(nb:dict, fresh:list[str]) -> dict:
    "`nb` (JSON) with the outputs of its generated cells replaced by `fresh` Markdown."
    cells = [c for c in nb['cells'] if c['cell_type'] == 'code' and re.search(r'^#\|\s*echo:\s*false', ''.join(c['source']), re.M)]
    for c, md in zip(cells, fresh):
        c['outputs'] = [dict(data={'text/markdown': md.splitlines(keepends=True), 'text/plain': ['<IPython.core.display.Markdown object>']},
                             execution_count=None, metadata={}, output_type='execute_result')]
    return nb

def cell_md(c, fresh:dict) -> str:
    if c.cell_type == 'markdown': return link.sub(r'](nbs/\1)', c.source)
    if c.source.lstrip().startswith('#| hide'): return ''
    if id(c) in fresh: return fresh[id(c)]
    src = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|'))
    outs = c.get('outputs', [])
    txt = [''.join(o['data']['text/plain']) if 'data' in o else ''.join(o.get('text', '')) for o in outs if o.get('name') != 'stderr']
    code = [] if '#| echo: false' in c.source else [f"```python\n{src}\n```"]
    return '\n\n'.join(code + [f"```\n{o.rstrip()}\n```" for o in txt if o.strip()])

def build() -> tuple[str, str, list[str]]:
    "README.md's text, index.ipynb's text with fresh outputs, and the generated Markdown blocks."
    nb = read_nb(index)
    title, *rest = nb.cells
    gen = [c for c in rest if generated(c)]
    fresh = run_cells(gen)
    head = title.source.replace('> ', '', 1).replace('\n> ', ' ')
    body = [cell_md(c, dict(zip(map(id, gen), fresh))) for c in rest]
    readme = '\n\n'.join([head, *filter(None, body)]) + '\n'
    nb_text = json.dumps(refreshed(json.loads(index.read_text()), fresh), indent=1, ensure_ascii=False) + '\n'
    return readme, nb_text, fresh

if __name__ == '__main__':
    readme, nb_text, _ = build()
    stale = [p for p, text in ((root/'README.md', readme), (index, nb_text)) if p.read_text() != text]
    if '--check' in sys.argv:
        if stale: sys.exit(f"stale: {', '.join(p.relative_to(root).as_posix() for p in stale)}: run python .ci/readme.py and commit the result")
    else:
        for p, text in ((root/'README.md', readme), (index, nb_text)):
            if p in stale: p.write_text(text)
