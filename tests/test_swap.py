"A real `opsbook-serve --registry` with two workers, following promotions under load: every request answered 200 while it swaps, bad bundles refused, concurrent promotions ending on the last one."
import asyncio, json, shutil, sqlite3, subprocess, threading, time
from pathlib import Path
import httpx, onnx, pytest
from onnx import helper
from opsbook.bundle import amend_card, load_bundle, sha256
from opsbook.learner import free_port
from opsbook.registry import Store, history, pointer, promote

# Bundles a worker must refuse, put in a registry past promotion's checks (bench/swap.py uses them too).
def version(src:Path, dst:Path, v:str) -> Path:
    "A copy of the bundle `src` at `dst` under the version `v` (the same graph: enough to see a switch)."
    shutil.copytree(src, dst); amend_card(dst, version=v); return dst

def forced(registry:Path, src:Path, v:str, edit) -> str:
    "Copy the bundle `src` into `registry` as version `v`, its graph changed by `edit`, and point current at it unchecked."
    c = json.loads((src/'bundle.json').read_text())
    dst = Path(registry)/'bundles'/f"{c['name']}-{v}"
    shutil.copytree(src, dst); edit(dst/'model.onnx')
    c.update(version=v, files={f: sha256(dst/f) for f in c['files']}); (dst/'bundle.json').write_text(json.dumps(c))
    Store(registry).write('current.json', json.dumps(dict(bundle=dst.name, name=c['name'], version=v,
                                                          card_sha256=sha256(dst/'bundle.json'), serial=0)).encode())
    return dst.name

def graph(edit):
    "An edit of an ONNX file by `edit(model)`."
    def apply(path):
        g = onnx.load(str(path)); edit(g); onnx.save(g, str(path))
    return apply

def cut(path:Path): path.write_bytes(path.read_bytes()[:2000])                   # ONNX Runtime cannot load it
def batch_of_one(g): g.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # loads, fails on the warm-up batch
def wider(g):                                                                      # an embedding twice as wide
    for n in g.graph.node:
        n.input[:] = ['narrow' if i == 'embedding' else i for i in n.input]
        n.output[:] = ['narrow' if o == 'embedding' else o for o in n.output]
    g.graph.node.append(helper.make_node('Concat', ['narrow', 'narrow'], ['embedding'], axis=1))
    next(o for o in g.graph.output if o.name == 'embedding').type.tensor_type.shape.dim[1].dim_param = 'wide'
BAD = {'load': cut, 'warm': graph(batch_of_one), 'incompatible': graph(wider)}

class Following:
    "`opsbook-serve --registry` started as a user would, with `workers` workers, ready when every worker answers /model."
    def __init__(self, registry:Path, db:Path, workers:int=2, poll_s:float=0.2):
        self.url, self.db, self.workers = f'http://127.0.0.1:{free_port()}', db, workers
        cmd = [shutil.which('opsbook-serve'), '--registry', str(registry), '--port', self.url.rsplit(':', 1)[1], '--log-db', str(db),
               '--workers', str(workers), '--threads', '1', '--poll-s', str(poll_s)]
        self.out = open(f'{db}.out', 'w')
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT)
        until(lambda: len(self.states()) == workers, 'every worker ready', 90, self)

    def states(self, tries:int=60) -> dict[int, dict]:
        "Each worker's /model, by worker pid (new connections, so the kernel spreads them over the workers)."
        seen = {}
        for _ in range(tries):
            try: s = httpx.get(f'{self.url}/model', timeout=5).json()
            except httpx.TransportError: break
            seen[s['worker']] = s
            if len(seen) == self.workers: break
        return seen

    def on(self, v:str) -> bool: return {s['version'] for s in self.states().values()} == {v} and len(self.states()) == self.workers
    def log(self) -> str: return Path(f'{self.db}.out').read_text()
    def stop(self):
        self.proc.terminate(); self.proc.wait(timeout=60); self.out.close()

def until(cond, what:str, timeout:float=60, srv:Following|None=None):
    "Poll `cond` until true; fail saying `what` did not happen."
    deadline = time.time() + timeout
    while time.time() < deadline:
        if srv: assert srv.proc.poll() is None, srv.log()[-3000:]
        if cond(): return
        time.sleep(0.1)
    raise AssertionError(f'{what}: not within {timeout} s' + (f'\n{srv.log()[-3000:]}' if srv else ''))

class Load(threading.Thread):
    "`conc` clients posting `data` to /predict back to back until stopped; each answer's status, version header and id."
    def __init__(self, url:str, data:bytes, conc:int=4):
        super().__init__(daemon=True)
        self.url, self.data, self.conc, self.answers, self.halt = url, data, conc, [], threading.Event()

    async def client(self, c:httpx.AsyncClient):
        while not self.halt.is_set():
            try:
                r = await c.post(f'{self.url}/predict', files={'file': ('d.png', self.data, 'image/png')})
                self.answers.append((r.status_code, r.headers.get('x-model-version'), r.json().get('request_id')))
            except httpx.HTTPError as e: self.answers.append((type(e).__name__, None, None))

    def run(self):
        async def main():
            async with httpx.AsyncClient(timeout=60) as c: await asyncio.gather(*[self.client(c) for _ in range(self.conc)])
        asyncio.run(main())

    def stop(self) -> list:
        self.halt.set(); self.join(60); return self.answers

def test_workers_follow_promotions_under_load_with_no_failed_request(small_bundle, test_items, tmp_path):
    reg, v1 = tmp_path/'reg', load_bundle(small_bundle).card.version
    two = version(small_bundle, tmp_path/'two', '2')
    promote(reg, small_bundle)
    srv = Following(reg, tmp_path/'log.db')
    load = Load(srv.url, Path(test_items.path.iloc[0]).read_bytes())
    try:
        load.start()
        until(lambda: len(load.answers) > 20, 'answers under load')
        for v, b in [('2', two), (v1, small_bundle), ('2', two)]:                # promotions, alternating, under load
            promote(reg, b)
            until(lambda: srv.on(v), f'every worker on {v}', 60, srv)
        for why, edit in BAD.items():                                           # bad bundles, refused, still under load
            bid = forced(reg, small_bundle, f'bad-{why}', edit)
            until(lambda: all((s['last_failure'] or {}).get('bundle') == bid for s in srv.states().values()), f'{bid} refused', 60, srv)
            states = srv.states()
            assert {(s['version'], s['last_failure']['reason']) for s in states.values()} == {('2', why)}, states
        answers = load.stop()
        m = httpx.get(f'{srv.url}/metrics').text
    finally:
        load.stop(); srv.stop()
    statuses = {a[0] for a in answers}
    assert statuses == {200}, [a for a in answers if a[0] != 200][:5]
    assert {a[1] for a in answers} == {v1, '2'}                                   # both versions answered
    with sqlite3.connect(tmp_path/'log.db') as db: logged = dict(db.execute('select request_id, version from predictions'))
    assert {rid: v for _, v, rid in answers} == {rid: logged.get(rid) for _, _, rid in answers}   # the log agrees
    for why in BAD: assert f'opsbook_swap_failures_total{{reason="{why}"}} 2.0' in m, (why, m)   # one per worker
    assert 'opsbook_swaps_total 6.0' in m and 'refused' in srv.log()

def test_concurrent_promotions_end_on_the_last_each_loaded_once_per_worker(small_bundle, tmp_path):
    reg = tmp_path/'reg'
    promote(reg, small_bundle)
    three, four = (version(small_bundle, tmp_path/v, v) for v in ('3', '4'))
    srv = Following(reg, tmp_path/'log.db', poll_s=0.05)
    try:
        ts = [threading.Thread(target=promote, args=(reg, b)) for b in (three, four)]
        for t in ts: t.start()
        for t in ts: t.join()
        last = pointer(reg)['version']
        test_last = history(reg)[-1]['to']
        assert test_last.endswith(f'-{last}')
        until(lambda: srv.on(last), f'every worker on {last}', 60, srv)
        states = srv.states()
    finally: srv.stop()
    for s in states.values():
        assert all(n == 1 for n in s['loads'].values()), s['loads']             # no bundle loaded twice by one worker
        assert s['loads'][f"{s['name']}-{last}"] == 1
