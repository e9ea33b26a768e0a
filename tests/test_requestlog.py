"A real `opsbook-serve` whose request log cannot grow keeps serving, counts what it drops and stops quickly; its log keeps only the rows its settings allow."
import resource, shutil, signal, sqlite3, subprocess, time
import httpx
from opsbook.requestlog import RequestLog
from test_serve import Server, free_port

def until(cond, what:str, timeout:float=30):
    "Poll `cond` until true; fail saying `what` did not happen."
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond(): return
        time.sleep(0.1)
    raise AssertionError(f'{what}: not within {timeout} s')

class SmallDiskServer(Server):
    "`opsbook-serve` unable to write any file past `fsize` bytes (RLIMIT_FSIZE): its request log cannot grow, as on a full disk."
    def __init__(self, bundle, db, fsize:int):
        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # a write past the limit fails (EFBIG) instead of killing
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        self.port, self.db = free_port(), db
        self.url = f'http://127.0.0.1:{self.port}'
        cmd = [shutil.which('opsbook-serve'), '--bundle', str(bundle), '--port', str(self.port), '--log-db', str(db)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=limit)
        until(lambda: self.ready() is not None, 'server ready', 60)

    def ready(self) -> dict|None:
        assert self.proc.poll() is None, self.proc.stdout.read()
        try: r = httpx.get(f'{self.url}/readyz', timeout=1)
        except httpx.TransportError: return None
        return r.json() if r.status_code == 200 else None

    def metric(self, name:str) -> float:
        return float(next(l for l in httpx.get(f'{self.url}/metrics').text.splitlines() if l.startswith(name)).split()[-1])

def test_a_log_that_cannot_grow_degrades_logging_not_serving(small_bundle, test_items, tmp_path):
    srv = SmallDiskServer(small_bundle, tmp_path/'log.db', fsize=96 * 1024)
    try:
        assert srv.ready()['logging'] == 'ok'
        ids = []
        for p in test_items.path[:100]:
            r = httpx.post(f'{srv.url}/predict', files={'file': ('d.png', open(p, 'rb').read(), 'image/png')})
            assert r.status_code == 200, r.text                                    # predictions go on
            ids.append(r.json()['request_id'])
        until(lambda: srv.metric('opsbook_requestlog_dropped_total') + len(srv.logged()) == 100, 'every row written or dropped')
        ready = srv.ready()
        assert ready['logging'] == 'degraded' and 'I/O error' in ready['logging_reason'], ready
        dropped, errors = srv.metric('opsbook_requestlog_dropped_total'), srv.metric('opsbook_log_write_errors_total')
        assert 0 < dropped < 100 and 0 < errors <= dropped                         # one attempt per lost batch, not retried
        t0 = time.time()
    finally: code = srv.stop()
    assert code in (0, -signal.SIGTERM) and time.time() - t0 < 10                 # shutdown does not wait on the log
    logged = srv.logged()
    assert len(logged) == 100 - dropped and set(logged) <= set(ids)

def test_the_service_deletes_rows_past_its_retention(small_bundle, tmp_path):
    db, now = tmp_path/'log.db', time.time()
    log = RequestLog(db, max_rows=0, max_age_s=0)                                  # a log written without limits
    for i in range(300): log.add(dict(ts=now - 40 * 86400 if i < 100 else now, request_id=str(i), model='m', version='1'))
    log.close()
    srv = Server(small_bundle, db, '--log-max-rows', '120', '--log-max-days', '30')
    try:
        def kept():
            with sqlite3.connect(db) as con: return con.execute('select count(*), min(ts) from predictions').fetchone()
        until(lambda: kept()[0] == 120, 'rows past the limits deleted')
        assert kept()[1] > now - 86400                                             # none older than 30 days
        with sqlite3.connect(db) as con: assert [r[0] for r in con.execute('select request_id from predictions')] == \
            [str(i) for i in range(180, 300)]                                      # the newest kept
    finally: srv.stop()
