"""Hot swap under load (issue 19, point 2): `opsbook-serve --registry` with two workers follows promotions with no
failed request.

A digits bundle (the default run, approved by its quality gate) and a copy under another version are promoted in
turn into a registry folder served by `opsbook-serve --registry --workers 2 --threads 1 --poll-s 0.5`, and:

1. **capacity**: a closed loop of 8 concurrent requests for `--capacity-s` seconds; capacity is its 200s per second;
2. **steady**: an open-loop generator (asyncio + httpx, as in bench/overload.py) sends a request every
   1/(`--load` × capacity) seconds for `--steady-s` seconds, whatever the answers; no promotion;
3. **swapping**: the same arrivals for `--seconds` seconds while `--promotions` promotions alternate between the
   two bundles, evenly spaced; a swap lasts from the promotion to the last answer given by an older version (read
   from the answers' `X-Model-Version`: polling /model would add requests of its own);
4. **bad bundles**: the same arrivals while three bundles that must be refused are put in the registry past
   promotion's checks (tests/test_swap.py makes them): a cut graph (load), a graph with a fixed batch of one
   (warm-up), a graph with an embedding twice as wide (output shape); each waits until both workers refused it;
5. **memory**: on a fresh server serving an untrained ResNet-18 at 224 px (bench/serve.py's `resnet_bundle`, a
   model large enough for ONNX Runtime's memory to show; `--allow-unapproved`), two swaps to settle, then each
   worker's resident memory (VmRSS), then `--swaps` more swaps with a few predictions each, then VmRSS again;
6. **arena**: in a fresh process each (no torch), `--swaps` ONNX Runtime sessions on that ResNet-18 created, run
   on a batch of eight and released once the next exists (two alive at once, as in a swap), with the CPU memory
   arena on (ONNX Runtime's default, what the service uses) and off, each with glibc's `malloc_trim` after each
   release (what a worker does after a swap, `opsbook.serve.trim_heap`) and without: VmRSS after the first and the
   last.

The open loop is used rather than wrk because it records each answer's `X-Model-Version` and `request_id` (to
check them against the request log) and, sending on schedule whatever the answers, does not hide latency the
way a closed loop does. Reported: statuses and socket errors per phase; p50/p99 of the 200s (steady, over the whole
swapping phase, over the requests sent while a swap was under way, and over the others); the versions answered and whether the
request log records the same version for every answered request_id; each worker's VmRSS growth; each bad
bundle's refusal reason per worker; how late the generator started requests; the load average before and after.
Targets: 0 non-2xx and 0 socket errors; p99 of the requests sent while a swap was under way ≤ 1.5 × steady p99; both versions answered and the log
agreeing; growth ≤ 50 MB per worker after the swaps; each bad bundle refused by every worker.

`python bench/swap.py [--seconds 60] [--promotions 20] [--load 0.7] [--swaps 50]`. Prints a table, writes
bench/swap.json.
"""
import argparse, asyncio, json, os, platform, shutil, sqlite3, subprocess, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
import httpx, numpy as np

bench = Path(__file__).resolve().parent
P99_X, RSS_MB = 1.5, 50

def arena_cycles(model:str, on:bool, trim:bool, n:int) -> dict:
    """VmRSS (MB) after the first and the last of `n` ONNX Runtime sessions on `model`, each run on 8 images, then released
    once the next is made (two alive at once, as in a swap), with the CPU arena `on` or off, and glibc's malloc_trim if `trim`."""
    import ctypes, gc, onnxruntime as ort
    rss = lambda: int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 1024
    x, keep, out = None, None, []
    for _ in range(n):
        so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.enable_cpu_mem_arena = on
        s = ort.InferenceSession(model, so, providers=['CPUExecutionProvider'])
        i = s.get_inputs()[0]
        x = np.random.default_rng(0).random((8, *i.shape[1:]), dtype=np.float32) if x is None else x
        s.run(None, {i.name: x}); s.run(None, {i.name: x[:1]})
        keep, old = s, keep
        del old, s; gc.collect()
        if trim: ctypes.CDLL(None).malloc_trim(0)
        out.append(rss())
    return dict(arena=on, trim=trim, sessions=n, first_mb=round(out[0]), last_mb=round(out[-1]), growth_mb=round(out[-1] - out[0]),
                peak_mb=round(max(out)))

if __name__ == '__main__' and sys.argv[1:2] == ['--arena-cycles']:           # the arena phase's child process
    print(json.dumps(arena_cycles(sys.argv[2], sys.argv[3] == 'on', sys.argv[4] == 'trim', int(sys.argv[5])))); sys.exit(0)

sys.path.insert(0, str(bench.parent/'tests'))
from serve import commit, free_port, resnet_bundle, stop
from flood import status_kb, worker_pids
from overload import capacity, open_loop, pct, start
from test_swap import BAD, forced, version

def states(url:str, workers:int, tries:int=200) -> dict[int, dict]:
    "Each worker's /model by pid, asked on new connections until every worker answered."
    seen = {}
    for _ in range(tries):
        s = httpx.get(f'{url}/model', timeout=10).json()
        seen[s['worker']] = s
        if len(seen) == workers: break
    return seen

def wait(cond, what:str, timeout:float=60) -> float:
    "Poll `cond` until true; the seconds it took."
    t = time.perf_counter()
    while not cond():
        if time.perf_counter() - t > timeout: raise RuntimeError(f'{what}: not within {timeout} s')
        time.sleep(0.25)
    return time.perf_counter() - t

async def post(c:httpx.AsyncClient, url:str, data:bytes) -> dict:
    "One upload: status (or the error's name), seconds from the send, the answer's version and request id."
    t = time.perf_counter()
    try:
        r = await c.post(url, files={'file': ('x.png', data, 'image/png')})
        status, v, rid = r.status_code, r.headers.get('x-model-version'), r.json().get('request_id')
    except httpx.HTTPError as e: status, v, rid = type(e).__name__, None, None
    return dict(status=status, s=time.perf_counter() - t, sent=t, version=v, request_id=rid)

def summary(answers:list, lag:list) -> dict:
    "Statuses, socket errors, and the 200s' latency of an open-loop phase."
    ok = [x['s'] for x in answers if x['status'] == 200]
    statuses = {str(k): sum(1 for x in answers if x['status'] == k) for k in sorted({x['status'] for x in answers}, key=str)}
    return dict(sent=len(answers), statuses=statuses, non_2xx=sum(1 for x in answers if isinstance(x['status'], int) and not 200 <= x['status'] < 300),
                socket_errors=sum(1 for x in answers if not isinstance(x['status'], int)),
                p50_ms=pct([s * 1000 for s in ok], 50), p99_ms=pct([s * 1000 for s in ok], 99), max_ms=pct([s * 1000 for s in ok], 100),
                generator_lag_p99_ms=pct([l * 1000 for l in lag], 99))

def promotions(reg:Path, bundles:list, n:int, every:float, url:str, workers:int, wait_all:bool=True, **kw) -> list[dict]:
    "`n` promotions alternating between `bundles`, one every `every` s; each: its version, when it was made, and, with `wait_all`, when every worker's /model named it."
    from opsbook.registry import promote
    out, t0 = [], time.perf_counter()
    for i in range(n):
        time.sleep(max(0, t0 + i * every - time.perf_counter()))
        b = bundles[(i + 1) % len(bundles)]
        v = json.loads((Path(b)/'bundle.json').read_text())['version']
        t = time.perf_counter()
        promote(reg, b, reason=f'bench/swap.py {i + 1}', **kw)
        if wait_all: wait(lambda: {s['version'] for s in states(url, workers).values()} == {v}, f'every worker on {v}')
        out.append(dict(version=v, at=t, swap_s=round(time.perf_counter() - t, 3) if wait_all else None))
    return out

def swap_windows(proms:list, answers:list) -> list[dict]:
    "Each promotion's window, from when it was made to the send of the last answer by an older version (no extra requests)."
    ends = [p['at'] for p in proms[1:]] + [float('inf')]
    for p, end in zip(proms, ends):
        old = [x['sent'] + x['s'] for x in answers if p['at'] <= x['sent'] < end and x['status'] == 200 and x['version'] != p['version']]
        p['swap_s'] = round(max(old, default=p['at']) - p['at'], 3)
    return proms

def refusals(reg:Path, good:Path, url:str, workers:int) -> dict:
    "Put each bad bundle in the registry in turn; each worker's refusal reason for it, and the version it went on serving."
    out = {}
    for why, edit in BAD.items():
        bid = forced(reg, good, f'bad-{why}', edit)
        wait(lambda: all((s['last_failure'] or {}).get('bundle') == bid for s in states(url, workers).values()), f'{bid} refused')
        out[why] = {str(p): [s['last_failure']['reason'], s['version']] for p, s in states(url, workers).items()}
    return out

def logged_versions(db:Path) -> dict:
    with sqlite3.connect(db) as c: return dict(c.execute('select request_id, version from predictions'))

def load_phases(a, work:Path, data:bytes) -> dict:
    "Capacity, steady, swapping and bad-bundle phases on one server following a registry of two digits bundles."
    from opsbook.train import train_bundle
    from opsbook.evaluate import gate, check_approved
    from opsbook.registry import promote
    if a.bundle: one = shutil.copytree(a.bundle, work/'one')
    else:
        one = train_bundle(work/'one', name='digits-swap')
        check_approved(gate(one), one)
    two = version(one, work/'two', 'swap-2')
    reg, port = work/'reg', free_port()
    promote(reg, one, reason='bench/swap.py: first')
    url, db = f'http://127.0.0.1:{port}', work/'swap.db'
    srv = start(port, a.workers, db, '--registry', str(reg), '--poll-s', str(a.poll_s))
    try:
        cap = asyncio.run(capacity(f'{url}/predict', data, a.capacity_s))
        rate = a.load * cap
        ans, lag, _, _ = asyncio.run(open_loop(f'{url}/predict', data, rate, a.steady_s, post))
        steady = summary(ans, lag)
        every = a.seconds / (a.promotions + 1)
        swap_ans, lag, _, proms = asyncio.run(open_loop(f'{url}/predict', data, rate, a.seconds, post,
                                                        lambda: promotions(reg, [one, two], a.promotions, every, url, a.workers, False)))
        swapping = summary(swap_ans, lag)
        proms = swap_windows(proms, swap_ans)
        v = proms[-1]['version']
        wait(lambda: {s['version'] for s in states(url, a.workers).values()} == {v}, f'every worker on {v}')
        under = [x for x in swap_ans if any(p['at'] <= x['sent'] <= p['at'] + p['swap_s'] for p in proms)]
        swapping['while_swapping'] = summary(under, [0])
        swapping['between_swaps'] = summary([x for x in swap_ans if x not in under], [0])
        bad_ans, lag, _, refused = asyncio.run(open_loop(f'{url}/predict', data, rate, a.bad_s, post,
                                                          lambda: refusals(reg, one, url, a.workers)))
        bad = dict(summary(bad_ans, lag), refused=refused)
        m = httpx.get(f'{url}/metrics').text
    finally: stop(srv)
    logged = logged_versions(db)
    answered = [x for x in swap_ans if x['status'] == 200]
    swapping.update(versions=sorted({x['version'] for x in answered}),
                    log_agrees=all(logged.get(x['request_id']) == x['version'] for x in answered),
                    log_missing=sum(1 for x in answered if x['request_id'] not in logged),
                    promotions=len(proms), swap_s=dict(p50=pct([p['swap_s'] for p in proms], 50), max=pct([p['swap_s'] for p in proms], 100)))
    failures = {l.split('"')[1]: float(l.split()[-1]) for l in m.splitlines() if l.startswith('opsbook_swap_failures_total{')}
    bad['swap_failures_total'] = failures
    return dict(capacity_rps=round(cap, 1), rate=round(rate, 1), steady=steady, swapping=swapping, bad=bad)

def memory_phase(a, work:Path, digits) -> dict:
    "VmRSS of each worker after two swaps and after `a.swaps` more, on a ResNet-18 registry, a few predictions per swap."
    from opsbook.registry import promote
    r1 = resnet_bundle(work/'r1', digits)
    r2 = version(r1, work/'r2', 'r-2')
    reg, port = work/'rreg', free_port()
    promote(reg, r1, allow_unapproved=True)
    url = f'http://127.0.0.1:{port}'
    srv = start(port, a.workers, work/'mem.db', '--registry', str(reg), '--poll-s', '0.2', '--allow-unapproved')
    img = __import__('io').BytesIO()
    from PIL import Image
    Image.open(digits.split('test').path.iloc[0]).convert('RGB').resize((224, 224)).save(img, 'PNG')
    data = img.getvalue()
    rss = lambda: {p: round(status_kb(p, 'VmRSS') / 1024, 1) for p in worker_pids(srv.pid)}
    serving = [r1]
    def swaps(n):
        for _ in range(n):
            serving[0] = r2 if serving[0] == r1 else r1
            promotions(reg, [serving[0]], 1, 0, url, a.workers, allow_unapproved=True)
            for _ in range(4): assert httpx.post(f'{url}/predict', files={'file': ('x.png', data, 'image/png')}, timeout=60).status_code == 200
    try:
        swaps(2); before = rss()
        t = time.perf_counter(); swaps(a.swaps); took = time.perf_counter() - t
        after = rss()
    finally: stop(srv)
    arena = [json.loads(subprocess.run([sys.executable, __file__, '--arena-cycles', str(r1/'model.onnx'), on, trim, str(a.swaps)],
                                       capture_output=True, text=True, check=True).stdout) for on in ('on', 'off') for trim in ('trim', 'no')]
    return dict(model='resnet18-224-untrained', swaps=a.swaps, seconds=round(took, 1), rss_before_mb=list(before.values()),
                rss_after_mb=[after.get(p) for p in before], growth_mb=[round(after.get(p, 0) - before[p], 1) for p in before], arena=arena)

def targets(r:dict) -> list[dict]:
    s, st, bad, mem = r['swapping'], r['steady'], r['bad'], r['memory']
    ratio = round(s['while_swapping']['p99_ms'] / st['p99_ms'], 2)
    out = [('0 non-2xx (steady, swapping, bad)', st['non_2xx'] + s['non_2xx'] + bad['non_2xx'], 0),
           ('0 socket errors', st['socket_errors'] + s['socket_errors'] + bad['socket_errors'], 0),
           (f'p99 while swapping ≤ {P99_X}× steady', ratio, P99_X),
           ('both versions answered', len(s['versions']), 2),
           ('the log agrees with every answer', s['log_agrees'], True),
           (f'worker RSS growth after {mem["swaps"]} swaps ≤ {RSS_MB} MB', max(mem['growth_mb']), RSS_MB),
           ('each bad bundle refused by every worker', all(r[0] == k for k, w in bad['refused'].items() for r in w.values()), True)]
    met = lambda n, v, t: v is t if isinstance(t, bool) else (v == t if n.startswith(('0 ', 'both')) else v <= t)
    return [dict(target=n, value=v, threshold=t, met=met(n, v, t)) for n, v, t in out]

def show(r:dict):
    print(f"capacity (closed loop, 8 concurrent): {r['capacity_rps']} req/s; arrivals at {r['rate']} req/s")
    print(f"{'phase':16} {'sent':>5} {'statuses':22} {'sock err':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'lag p99':>7}")
    for k, p in [('steady', r['steady']), ('swapping', r['swapping']), ('  while a swap', r['swapping']['while_swapping']),
                 ('  between swaps', r['swapping']['between_swaps']), ('bad bundles', r['bad'])]:
        f = lambda v: f'{v:7.1f}' if v is not None else '      -'
        print(f"{k:16} {p['sent']:5d} {json.dumps(p['statuses']):22} {p['socket_errors']:8d} {f(p['p50_ms'])} {f(p['p99_ms'])} {f(p['max_ms'])} {f(p['generator_lag_p99_ms'])}")
    s, m = r['swapping'], r['memory']
    print(f"{s['promotions']} promotions; the last answer by an older version came {s['swap_s']['p50']} s after the promotion (median), {s['swap_s']['max']} s (max); "
          f"versions answered {s['versions']}; log agrees: {s['log_agrees']} ({s['log_missing']} answered ids not logged)")
    print(f"bad bundles: {r['bad']['refused']}; opsbook_swap_failures_total {r['bad']['swap_failures_total']}")
    print(f"memory, {m['model']}, {m['swaps']} swaps in {m['seconds']} s: VmRSS {m['rss_before_mb']} -> {m['rss_after_mb']} MB, growth {m['growth_mb']} MB")
    for x in m['arena']: print(f"  {x['sessions']} sessions, arena {'on ' if x['arena'] else 'off'}, {'malloc_trim' if x['trim'] else 'no trim    '}: "
                               f"VmRSS {x['first_mb']} -> {x['last_mb']} MB (growth {x['growth_mb']}, peak {x['peak_mb']})")
    for t in r['targets']: print(f"target: {t['target']:48} {str(t['value']):>8} vs {str(t['threshold']):<6} {'met' if t['met'] else 'NOT met'}")

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=float, default=60, help='length of the swapping phase')
    ap.add_argument('--promotions', type=int, default=20, help='promotions during it, alternating between two bundles')
    ap.add_argument('--steady-s', type=float, default=30, help='length of the steady phase')
    ap.add_argument('--bad-s', type=float, default=20, help='length of the arrivals while the bad bundles are refused')
    ap.add_argument('--load', type=float, default=0.7, help='arrival rate as a share of the measured capacity')
    ap.add_argument('--capacity-s', type=float, default=10)
    ap.add_argument('--swaps', type=int, default=50, help='swaps of the memory phase')
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--poll-s', type=float, default=0.5)
    ap.add_argument('--bundle', help='an approved digits bundle to use instead of training one')
    ap.add_argument('--out', default=str(bench/'swap.json'))
    a = ap.parse_args()
    from opsbook.data import digits_folder, scan_folder
    digits = scan_folder(digits_folder())
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        data = Path(digits.split('test').path.iloc[0]).read_bytes()
        res = load_phases(a, work, data)
        res['memory'] = memory_phase(a, work, digits)
    res['targets'] = targets(res)
    show(res)
    meta = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f"{platform.machine()}, {os.cpu_count()} cores",
                opsbook_commit=commit(), bundle='digits (default run, approved) and a copy under another version', workers=a.workers,
                load=a.load, poll_s=a.poll_s, seconds=a.seconds, loadavg_before=load0, loadavg_after=os.getloadavg())
    Path(a.out).write_text(json.dumps(dict(**meta, **res), indent=2))
