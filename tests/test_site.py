"The rendered docs site (_docs/, from `bash .ci/docs`): every page, the API reference, links, images, the diagram."
import ast, json, os, re, shutil, threading
from collections import Counter
from functools import cache, partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, unquote
import pytest, yaml
from nbdev.config import nbpath2html
from conftest import ROOT

NBS, SITE = ROOT/'nbs', ROOT/'_docs'
SITE_URL = yaml.safe_load((NBS/'nbdev.yml').read_text())['website']['site-url'].rstrip('/') + '/'
STAGES = ['Data', 'Training', 'Bundle', 'Evaluation', 'Variants', 'Serving', 'Request log', 'Drift', 'Retraining']

def page_name(src:Path) -> str:
    "The file Quarto writes for the source `src`: nbdev drops a notebook's numeric prefix."
    return nbpath2html(src).name if src.suffix == '.ipynb' else src.with_suffix('.html').name

def sources() -> list[Path]:
    "The site's pages as sources in nbs/: notebooks and Quarto documents."
    return sorted(p for p in [*NBS.glob('*.ipynb'), *NBS.glob('*.qmd')] if not p.name.startswith('_'))

@pytest.fixture(scope='module')
def site() -> Path:
    if not (SITE/'index.html').exists(): pytest.skip('the docs site is not rendered: `bash .ci/docs` renders _docs/ and runs these tests')
    return SITE

class Page(HTMLParser):
    "The ids, links (tag, url), tags (tag, class, href) and text of one HTML page."
    def __init__(self, path:Path):
        super().__init__()
        self.ids, self.links, self.tags, self.text = set(), [], [], []
        self.feed(path.read_text())
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        self.links += [(tag, a[k]) for k in ('href', 'src') if a.get(k)]
        self.tags.append((tag, a.get('class') or '', a.get('href')))
    def handle_data(self, data): self.text.append(data)

@cache
def page(path:Path) -> Page: return Page(path)

def target(src:Path, url:str) -> tuple[Path, str] | None:
    "The file in the site and the anchor that `url`, found in the page `src`, points to; None when it leads outside."
    u = urlsplit(url)
    if url.startswith(SITE_URL): path = SITE/unquote(u.path).removeprefix(urlsplit(SITE_URL).path)
    elif u.scheme or u.netloc: return None
    else: path = (src.parent/unquote(u.path)).resolve() if u.path else src
    return (path/'index.html' if url.split('#')[0].endswith('/') else path), u.fragment

def api(module:Path) -> list[str]:
    "The functions and classes that `module` exports in `__all__`."
    tree = ast.parse(module.read_text())
    defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    names = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, 'id', '') == '__all__' for t in n.targets)), [])
    return [n for n in names if n in defs]

def chapters() -> dict[str, Path]:
    "Each module and the notebook that exports it (`#| default_exp`)."
    found = {}
    for nb in NBS.glob('*.ipynb'):
        for c in json.loads(nb.read_text())['cells']:
            m = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M)
            if c['cell_type'] == 'code' and m: found[m.group(1)] = nb
    return found

def shown_images(nb:Path) -> int:
    "Images a reader of `nb` sees: image outputs of cells not hidden, and images in markdown."
    n = 0
    for c in json.loads(nb.read_text())['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown': n += len(re.findall(r'!\[[^\]]*\]\(', src))
        elif not re.search(r'^#\|\s*(hide|include:\s*false|output:\s*false)\b', src, re.M):
            n += sum(any(k.startswith('image/') for k in o.get('data', {})) for o in c.get('outputs', []))
    return n

def test_pages_have_distinct_names():
    twice = {name: [s.name for s in sources() if page_name(s) == name] for name, n in Counter(map(page_name, sources())).items() if n > 1}
    assert not twice, f'these sources render to the same page, one would hide the other: {twice}; rename one'

def test_site_is_newer_than_its_sources(site):
    stale = [s.name for s in sources() if (site/page_name(s)).exists() and s.stat().st_mtime > (site/page_name(s)).stat().st_mtime]
    assert not stale, f'{stale} changed after _docs/ was rendered: run `bash .ci/docs`'

def test_every_page_is_rendered(site):
    missing = [f'{s.name} -> {page_name(s)}' for s in sources() if not (site/page_name(s)).exists()]
    assert not missing, f'not rendered: {missing}'

def test_sidebar_lists_every_page(site):
    home = site/'index.html'
    listed = {target(home, href)[0].name for tag, cls, href in page(home).tags if 'sidebar-link' in cls.split() and href}
    missing = [s.name for s in sources() if page_name(s) not in listed]
    assert not missing, f'{missing} are not in the sidebar: add them to nbs/sidebar.yml'

def test_every_exported_function_and_class_is_documented_on_its_chapter_page(site):
    owners, missing = chapters(), []
    for module in sorted((ROOT/'opsbook').glob('[!_]*.py')):
        names, nb = api(module), owners.get(module.stem)
        if names and nb is None: missing.append(f'opsbook.{module.stem}: no notebook has `#| default_exp {module.stem}`')
        elif names: missing += [f'opsbook.{module.stem}.{n}: no #{n.lower()} on {page_name(nb)}' for n in names if n.lower() not in page(site/page_name(nb)).ids]
    assert not missing, '\n'.join(missing)

def test_internal_links_and_anchors_resolve(site):
    broken = []
    for html in sorted(site.rglob('*.html')):
        for tag, url in page(html).links:
            t = target(html, url)
            if t is None: continue
            path, anchor = t
            if not path.exists(): broken.append(f'{html.relative_to(site)}: {url} (no {path.relative_to(site) if path.is_relative_to(site) else path})')
            elif anchor and path.suffix == '.html' and anchor not in page(path).ids: broken.append(f'{html.relative_to(site)}: {url} (no #{anchor})')
    assert not broken, 'broken links:\n' + '\n'.join(sorted(set(broken)))

def test_images_are_present(site):
    problems = []
    for html in sorted(site.rglob('*.html')):
        for tag, url in page(html).links:
            t = target(html, url) if tag == 'img' else None
            if t and not (t[0].is_file() and t[0].stat().st_size): problems.append(f'{html.name}: image {url} is missing or empty')
    for nb in NBS.glob('*.ipynb'):
        shown = sum(tag == 'img' for tag, _ in page(site/page_name(nb)).links)
        if shown < shown_images(nb): problems.append(f'{page_name(nb)} shows {shown} images, {nb.name} has {shown_images(nb)}')
    assert not problems, '\n'.join(problems)

def test_architecture_page_has_the_mermaid_flowchart(site):
    arch = page(site/'architecture.html')
    scripts = [url for tag, url in arch.links if tag == 'script']
    assert any(url.endswith('mermaid.min.js') and target(site/'architecture.html', url)[0].is_file() for url in scripts), scripts
    assert any(tag == 'pre' and 'mermaid' in cls.split() for tag, cls, _ in arch.tags)
    source = ' '.join(arch.text)
    assert 'flowchart' in source and all(s in source for s in STAGES)

def test_subtitle_is_the_whole_package_description(site):
    "The home page's subtitle is pyproject's `description`, whole (a subtitle written over two lines was cut at the first)."
    desc = re.search(r'^description\s*=\s*"(.*)"$', (ROOT/'pyproject.toml').read_text(), re.M).group(1)   # no tomllib on 3.10
    home = (site/'index.html').read_text()
    shown = re.search(r'<div class="description">\s*(.*?)\s*</div>', home, re.S)
    assert shown and ' '.join(shown.group(1).split()) == desc, (shown and shown.group(1), desc)

BOX = """e => { const b = document.querySelector(e)?.getBoundingClientRect(); return b && {left: b.left, right: b.right} }"""

@pytest.fixture(scope='module')
def browser_page(site):
    "A function that opens a page of the site in headless Chromium, 1400 px wide, and hands it to a callback."
    from playwright.sync_api import sync_playwright
    srv = ThreadingHTTPServer(('127.0.0.1', 0), partial(QuietHandler, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{srv.server_port}'
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which('chromium'), args=['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'])
        def visit(name, fn):
            pg = browser.new_page(viewport=dict(width=1400, height=1000))
            pg.route('**/*', lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
            pg.goto(f'{url}/{name}')
            try: return fn(pg)
            finally: pg.close()
        yield visit
        browser.close()
    srv.shutdown(); srv.server_close()

@pytest.mark.skipif(not shutil.which('chromium') and not os.environ.get('CI'), reason='Debian chromium not installed')
def test_architecture_diagram_renders_in_a_browser_within_its_column(browser_page):
    def look(pg):
        svg = pg.wait_for_selector('svg[aria-roledescription^="flowchart"]', timeout=20_000)
        return svg.text_content(), {k: pg.evaluate(BOX, sel) for k, sel in
                                    dict(svg='svg[aria-roledescription^="flowchart"]', column='main.content > p', sidebar='#quarto-sidebar', toc='#quarto-margin-sidebar').items()}
    labels, box = browser_page('architecture.html', look)
    assert all(s in labels for s in STAGES), labels
    assert box['column']['left'] - 1 <= box['svg']['left'] and box['svg']['right'] <= box['column']['right'] + 1, f'the diagram is wider than its column at 1400 px: {box}'
    assert box['sidebar']['right'] <= box['svg']['left'] and box['svg']['right'] <= box['toc']['left'], f'the diagram covers a sidebar: {box}'

class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass
