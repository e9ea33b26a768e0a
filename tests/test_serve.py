"A real `opsbook-serve` process on 127.0.0.1: correct answers, concurrency, an exact request log, graceful SIGTERM."
import asyncio, shutil, signal, socket, sqlite3, subprocess, time
from pathlib import Path
import httpx, numpy as np
from opsbook.bundle import load_bundle

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

class Server:
    "`opsbook-serve` started as a user would, ready when /readyz answers."
    def __init__(self, bundle:Path, db:Path, *args):
        self.port, self.db = free_port(), db
        self.url = f'http://127.0.0.1:{self.port}'
        cmd = [shutil.which('opsbook-serve'), '--bundle', str(bundle), '--port', str(self.port), '--log-db', str(db), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read()
            try:
                if httpx.get(f'{self.url}/readyz', timeout=1).status_code == 200: return
            except httpx.TransportError: pass
            time.sleep(0.1)
        raise TimeoutError('server not ready in 60 s')

    def stop(self) -> int:
        "SIGTERM, then the exit status: uvicorn shuts down gracefully, then re-raises the signal (-15)."
        if self.proc.poll() is None: self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def logged(self) -> list[str]:
        with sqlite3.connect(self.db) as db: return [r[0] for r in db.execute('select request_id from predictions')]

async def post_many(url, paths, concurrency) -> list:
    "POST each of `paths` to /predict with at most `concurrency` in flight; the responses, or the exceptions."
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(p):
            async with sem:
                try: return await client.post(f'{url}/predict', files={'file': ('d.png', Path(p).read_bytes(), 'image/png')})
                except httpx.HTTPError as e: return e
        return await asyncio.gather(*[one(p) for p in paths])

def test_predictions_match_the_bundle(small_bundle, test_items, tmp_path):
    srv = Server(small_bundle, tmp_path/'log.db')
    try:
        paths = list(test_items.path[:60])
        got = [r.json()['label'] for r in asyncio.run(post_many(srv.url, paths, 8))]
        b = load_bundle(small_bundle)
        want = list(np.array(b.classes)[b.predict(paths)[0].argmax(1)])
        assert got == want
        assert np.mean(np.array(got) == test_items.label.values[:60]) > 0.8
        assert httpx.get(f'{srv.url}/model').json()['name'] == 'digits-test'
        assert httpx.post(f'{srv.url}/predict', files={'file': ('x.png', b'not an image')}).status_code == 415
    finally: assert srv.stop() in (0, -signal.SIGTERM)

def test_200_concurrent_requests_all_answered_and_logged_once(small_bundle, test_items, tmp_path):
    srv = Server(small_bundle, tmp_path/'log.db', '--workers', '2')
    try:
        paths = list(test_items.path) * 2
        res = asyncio.run(post_many(srv.url, paths[:200], 200))
        assert [getattr(r, 'status_code', r) for r in res] == [200] * 200
        for _ in range(4):                                          # whichever worker answers, it counts both workers' requests
            m = httpx.get(f'{srv.url}/metrics').text
            assert 'opsbook_requests_total{endpoint="/predict",status="200"} 200.0' in m
            assert sum(float(l.split()[-1]) for l in m.splitlines() if l.startswith('opsbook_predictions_total{')) == 200
    finally: srv.stop()
    ids = [r.json()['request_id'] for r in res]
    logged = srv.logged()
    assert len(logged) == 200 and sorted(logged) == sorted(ids)

def test_sigterm_during_load_loses_no_answered_row(small_bundle, test_items, tmp_path):
    srv = Server(small_bundle, tmp_path/'log.db')
    paths = list(test_items.path) * 4

    async def load_then_stop():
        task = asyncio.create_task(post_many(srv.url, paths, 32))
        deadline = time.time() + 30
        while time.time() < deadline and len(srv.logged()) < 50: await asyncio.sleep(0.05)
        srv.proc.send_signal(signal.SIGTERM)
        return await task
    res = asyncio.run(load_then_stop())
    assert srv.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    answered = {r.json()['request_id'] for r in res if isinstance(r, httpx.Response) and r.status_code == 200}
    assert len(answered) >= 50
    assert answered <= set(srv.logged())
