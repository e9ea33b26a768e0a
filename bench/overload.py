"""Overload: arrivals at twice what the service can answer, with admission control and without it (issue 18, point 2).

An untrained ResNet-18 bundle at 224 px (bench/serve.py's `resnet_bundle`; serving cost does not depend on the
weights; its card holds no quality-gate verdict, so the server runs with `--allow-unapproved`) is served by
`opsbook-serve --workers 2 --threads 1`, uploads a 224×224 RGB PNG of a digit, and:

1. **capacity**: a closed loop of 8 concurrent requests for `--capacity-s` seconds on a server without admission
   control (a closed loop never overloads it, and no fast refusals spin the loop); capacity is its 200 answers per
   second;
2. **overload**, on a fresh server each, with admission control (the defaults) and without it (`--no-admission`):
   an open-loop generator (asyncio + httpx) sends a request every 1/(2 × capacity) seconds for `--seconds` seconds
   whatever the answers, each on its own task, and waits for every answer (the service's 30-s deadline bounds it).

Per phase: the statuses; the latency of the 503s and whether each carries `Retry-After`; p50/p99 of the 200s;
goodput, the 200s answered within 2 s per second of the arrival window, against the capacity; each worker's peak
resident memory (the kernel's VmHWM, reset before the phase); `opsbook_refused_total`; and how late the generator
itself started requests (on a busy machine it can fall behind its schedule; latencies are timed from the send).
Targets: every answer 200 or 503; every 503 with Retry-After and within 100 ms; p99 of the 200s ≤ 2 s; goodput ≥ 90%
of capacity; worker peak RSS under 1 GB.

`python bench/overload.py [--seconds 15] [--rate-x 2] [--capacity-s 10] [--workers 2]`. Prints a table, writes
bench/overload.json.
"""
import argparse, asyncio, json, os, platform, re, subprocess, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
import httpx, numpy as np
from PIL import Image
from serve import commit, free_port, resnet_bundle, stop
from flood import Sampler, status_kb, worker_pids

bench = Path(__file__).resolve().parent
FAST_503_MS, P99_S, GOODPUT, RSS_MB = 100, 2.0, 0.9, 1024

def start(port:int, workers:int, db:Path, *args) -> subprocess.Popen:
    "`opsbook-serve *args` with one thread a worker, its output in `db`.log, ready when /readyz answers and all its workers run."
    with open(f'{db}.log', 'w') as out:
        p = subprocess.Popen(['opsbook-serve', '--port', str(port), '--workers', str(workers), '--threads', '1',
                              '--log-db', str(db), *args], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while time.time() < deadline and p.poll() is None:
        try:
            if httpx.get(f'http://127.0.0.1:{port}/readyz', timeout=5).status_code == 200 and len(worker_pids(p.pid)) == workers: return p
        except httpx.TransportError: pass
        time.sleep(0.3)
    stop(p); raise RuntimeError(f"opsbook-serve did not become ready: {Path(f'{db}.log').read_text()[-3000:]}")

async def post(c:httpx.AsyncClient, url:str, data:bytes) -> dict:
    "One upload: status (or the error's name), seconds from the send, and the Retry-After header."
    t = time.perf_counter()
    try:
        r = await c.post(url, files={'file': ('x.png', data, 'image/png')})
        status, retry = r.status_code, r.headers.get('retry-after')
    except httpx.HTTPError as e: status, retry = type(e).__name__, None
    return dict(status=status, s=time.perf_counter() - t, retry_after=retry, done=time.perf_counter())

async def capacity(url:str, data:bytes, seconds:float, conc:int=8) -> float:
    "200 answers per second of a closed loop of `conc` concurrent requests for `seconds`."
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=conc)) as c:
        for _ in range(2 * conc): await post(c, url, data)                             # warm both workers
        t0, ok = time.perf_counter(), 0
        async def loop():
            nonlocal ok
            while time.perf_counter() - t0 < seconds:
                r = await post(c, url, data)   # awaited first: `ok += await ...` reads `ok` before the await and loses the other loops' counts
                ok += r['status'] == 200
        await asyncio.gather(*[loop() for _ in range(conc)])
        return ok / (time.perf_counter() - t0)

async def open_loop(url:str, data:bytes, rate:float, seconds:float, send=post, during=None) -> tuple[list, list, float, object]:
    "A `send` every 1/`rate` s for `seconds` whatever the answers, while `during()` runs in a thread: answers, lags, start, its result."
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=None, max_keepalive_connections=64)) as c:
        side = asyncio.create_task(asyncio.to_thread(during)) if during else None
        tasks, lag, t0 = [], [], time.perf_counter()
        for i in range(int(rate * seconds)):
            due = t0 + i / rate
            await asyncio.sleep(max(0, due - time.perf_counter()))
            lag.append(time.perf_counter() - due)
            tasks.append(asyncio.create_task(send(c, url, data)))
        return await asyncio.gather(*tasks), lag, t0, (await side if side else None)

def pct(xs, q) -> float|None: return round(float(np.percentile(xs, q)), 4) if len(xs) else None

def phase(bundle:Path, data:bytes, rate:float, cap:float, a, work:Path, *args) -> dict:
    "One open-loop run at `rate` on a fresh server started with `args`."
    port = free_port()
    db = work/f'overload-{port}.db'
    srv = start(port, a.workers, db, '--bundle', str(bundle), '--allow-unapproved', *args)
    url = f'http://127.0.0.1:{port}'
    try:
        asyncio.run(capacity(f'{url}/predict', data, 2))                                  # warm up, and the throughput estimate
        workers = worker_pids(srv.pid)
        for p in workers: Path(f'/proc/{p}/clear_refs').write_text('5')                  # VmHWM back to the current RSS
        sampler = Sampler(srv.pid); sampler.start()
        answers, lag, t0, _ = asyncio.run(open_loop(f'{url}/predict', data, rate, a.seconds))
        sampler.done.set(); sampler.join()
        hwm = {p: status_kb(p, 'VmHWM') / 1024 for p in workers}
        restarts = len(set(worker_pids(srv.pid)) - set(workers))
        m = httpx.get(f'{url}/metrics').text
    finally: stop(srv)
    died = Path(f'{db}.log').read_text().count('died')                                # uvicorn: "Child process [pid] died"
    refused = sum(float(v) for v in re.findall(r'^opsbook_refused_total\{[^}]*\} (\S+)$', m, re.M))
    ok = [x['s'] for x in answers if x['status'] == 200]
    busy = [x for x in answers if x['status'] == 503]
    good = sum(1 for x in answers if x['status'] == 200 and x['s'] <= P99_S)
    statuses = {str(k): sum(1 for x in answers if x['status'] == k) for k in sorted({x['status'] for x in answers}, key=str)}
    return dict(args=list(args), rate=round(rate, 2), sent=len(answers), statuses=statuses,
                only_200_503=set(statuses) <= {'200', '503'},
                ok=dict(n=len(ok), p50_s=pct(ok, 50), p99_s=pct(ok, 99), max_s=pct(ok, 100)),
                busy=dict(n=len(busy), p50_ms=pct([x['s'] * 1000 for x in busy], 50), p99_ms=pct([x['s'] * 1000 for x in busy], 99),
                          max_ms=pct([x['s'] * 1000 for x in busy], 100), with_retry_after=sum(1 for x in busy if x['retry_after']),
                          within_100ms=sum(1 for x in busy if x['s'] * 1000 <= FAST_503_MS)),
                goodput=round(good / a.seconds, 2), goodput_vs_capacity=round(good / a.seconds / cap, 3),
                last_answer_s=round(max(x['done'] for x in answers) - t0, 1), refused_total=refused,
                generator_lag_ms=dict(p50=pct([l * 1000 for l in lag], 50), p99=pct([l * 1000 for l in lag], 99)),
                worker_peak_mb=[round(max(sampler.peak.get(p, 0), hwm.get(p, 0))) for p in sorted(set(workers) | set(sampler.peak))],
                worker_restarts=restarts, workers_died=died)

def targets(r:dict) -> list[dict]:
    b = r['busy']
    out = [('every answer 200 or 503', r['only_200_503'], True),
           ('every 503 has Retry-After', b['with_retry_after'] == b['n'], True),
           (f'every 503 within {FAST_503_MS} ms (max ms)', b['max_ms'] if b['n'] else 0, FAST_503_MS),
           (f'p99 of the 200s ≤ {P99_S} s', r['ok']['p99_s'], P99_S),
           (f'goodput ≥ {GOODPUT:.0%} of capacity', r['goodput_vs_capacity'], GOODPUT),
           (f'worker peak RSS < {RSS_MB} MB', max(r['worker_peak_mb']), RSS_MB)]
    met = lambda v, t: v is t if isinstance(t, bool) else (v is not None and (v >= t if t == GOODPUT else v <= t))
    return [dict(target=n, value=v, threshold=t, met=met(v, t)) for n, v, t in out]

def show(res:dict):
    print(f"capacity (closed loop, 8 concurrent): {res['capacity_rps']:.1f} req/s; arrivals at {res['rate']:.1f} req/s for {res['seconds']} s")
    print(f"{'phase':14} {'sent':>5} {'statuses':34} {'200 p50 s':>9} {'p99 s':>6} {'503 p50 ms':>10} {'p99':>6} {'max':>6} {'R-A':>5} "
          f"{'goodput':>7} {'vs cap':>6} {'last s':>6} {'peak MB':>10} {'restarts':>8} {'lag p99 ms':>10}")
    for k, r in res['phases'].items():
        o, b = r['ok'], r['busy']
        f = lambda v, spec: format(v, spec) if v is not None else '-'
        print(f"{k:14} {r['sent']:5d} {json.dumps(r['statuses']):34} {f(o['p50_s'], '9.2f')} {f(o['p99_s'], '6.2f')} {f(b['p50_ms'], '10.1f')} "
              f"{f(b['p99_ms'], '6.1f')} {f(b['max_ms'], '6.1f')} {b['with_retry_after']:5d} {r['goodput']:7.1f} {r['goodput_vs_capacity']:6.2f} "
              f"{r['last_answer_s']:6.1f} {'/'.join(map(str, r['worker_peak_mb'])):>10} {r['worker_restarts']:8d} {r['generator_lag_ms']['p99']:10.1f}")
    for k, r in res['phases'].items():
        for t in r['targets']: print(f"{k:14} target: {t['target']:34} {str(t['value']):>8} vs {str(t['threshold']):<6} {'met' if t['met'] else 'NOT met'}")

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=float, default=15, help='length of the arrival window')
    ap.add_argument('--rate-x', type=float, default=2.0, help='arrival rate as a multiple of the measured capacity')
    ap.add_argument('--capacity-s', type=float, default=10, help='length of the capacity measurement')
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--out', default=str(bench/'overload.json'))
    a = ap.parse_args()
    from opsbook.data import digits_folder, scan_folder
    digits = scan_folder(digits_folder())
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        bundle = resnet_bundle(work/'resnet'/'bundle', digits)
        b = __import__('io').BytesIO()
        Image.open(digits.split('test').path.iloc[0]).convert('RGB').resize((224, 224)).save(b, 'PNG')
        data = b.getvalue()
        port = free_port()
        srv = start(port, a.workers, work/'capacity.db', '--bundle', str(bundle), '--allow-unapproved', '--no-admission')
        try: cap = asyncio.run(capacity(f'http://127.0.0.1:{port}/predict', data, a.capacity_s))
        finally: stop(srv)
        rate = a.rate_x * cap
        res = dict(capacity_rps=round(cap, 2), rate=round(rate, 2), seconds=a.seconds,
                   phases={'admission': phase(bundle, data, rate, cap, a, work),
                           'no admission': phase(bundle, data, rate, cap, a, work, '--no-admission')})
    for r in res['phases'].values(): r['targets'] = targets(r)
    show(res)
    meta = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f"{platform.machine()}, {os.cpu_count()} cores",
                opsbook_commit=commit(), bundle='resnet18-224-untrained (--allow-unapproved)', upload_bytes=len(data), workers=a.workers,
                rate_x=a.rate_x, loadavg_before=load0, loadavg_after=os.getloadavg())
    Path(a.out).write_text(json.dumps(dict(**meta, **res), indent=2))
