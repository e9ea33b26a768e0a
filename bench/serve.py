"""Serving throughput and latency with wrk at 32 connections, every server on the same bundle, the same upload and the
same worker count, measured in one run:

- opsbook-serve with every feature on (validation, micro-batching, request log, metrics), one worker and two: its
  /predict, and its trivial `GET /healthz` (an `async def` returning a dict: the framework's ceiling);
- LitServe (dynamic batching) and BentoML (adaptive batching) serving the bundle's `model.onnx`, two workers each:
  the servers a user would pick instead (bench/litserve_server.py, bench/bentoml_server.py);
- a bare FastAPI + ONNX Runtime endpoint, two uvicorn workers, no batching, log, metrics or validation: the floor a
  user could write in ten lines (bench/bare_server.py);
- eager PyTorch once per request, one process (bench/eager_server.py).

The peers preprocess as the bundle's input spec says (bench/peer_model.py) and read the same multipart field `file`.
All servers start first, all must give the same label for the upload, and then the rounds run interleaved (A B C …,
A B C …): the servers not under load are paused (SIGSTOP, their whole process tree) so that they take no CPU, and
each row reports its median round, since these machines are shared and one round can be off by 20%. Each row also
gives the server's CPU time per answered request, and ONNX Runtime's own CPU time per image, the least a prediction
can cost. LitServe and BentoML run in their own virtualenv, bench/.venv-peers, made on first use from bench/peers.txt.

`python bench/serve.py [--bundle runs/<run>/bundle] [--resnet] [--seconds 8] [--rounds 3]`: without `--bundle` it
trains a digits bundle of the default run's architecture and size (serving cost does not depend on the weights);
`--resnet` adds an untrained ResNet-18 at 224 px. Prints a table and the Hardening issue's targets, writes
bench/serve.json. Needs wrk (Debian package `wrk`).
"""
import argparse, json, os, platform, resource, signal, socket, sqlite3, subprocess, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
import httpx, numpy as np
from PIL import Image

root = Path(__file__).resolve().parent.parent
bench = root/'bench'
VENV = bench/'.venv-peers'
LUA = r'''
local f = io.open(os.getenv("IMG"), "rb"); local data = f:read("*all"); f:close()
if os.getenv("POST") == "1" then
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=opsbookbench"
  wrk.body = "--opsbookbench\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n" .. data .. "\r\n--opsbookbench--\r\n"
end
done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format('RESULT {"requests": %d, "seconds": %f, "errors": %d, "timeouts": %d, "non2xx": %d, "p50_ms": %f, "p99_ms": %f}\n',
    s.requests, s.duration / 1e6, e.connect + e.read + e.write + e.timeout, e.timeout, e.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
'''

def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def peers_python() -> Path:
    "Python of the peers' virtualenv, made (or remade when bench/peers.txt changed) with pip from bench/peers.txt."
    py, want = VENV/'bin'/'python', (bench/'peers.txt').read_text()
    if not py.exists() or not (VENV/'peers.txt').exists() or (VENV/'peers.txt').read_text() != want:
        print(f'installing the peers into {VENV} (once)', flush=True)
        subprocess.run([sys.executable, '-m', 'venv', '--clear', str(VENV)], check=True)
        subprocess.run([str(py), '-m', 'pip', 'install', '-q', '--disable-pip-version-check', '-r', str(bench/'peers.txt')], check=True)
        (VENV/'peers.txt').write_text(want)
    return py

def tree(pid:int) -> list[int]:
    "`pid` and all its descendants (BentoML's workers start sessions of their own, so process groups do not do)."
    parent = {}
    for p in filter(str.isdigit, os.listdir('/proc')):
        try: parent[int(p)] = int(Path(f'/proc/{p}/stat').read_text().rsplit(')', 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError): pass
    out = [pid]
    for p in out: out += [c for c, pp in parent.items() if pp == p]
    return out

def signal_tree(pid:int, sig:int):
    for p in tree(pid):
        try: os.kill(p, sig)
        except ProcessLookupError: pass

def cpu_seconds(pid:int) -> float:
    "CPU seconds used so far by the live processes of `pid`'s tree."
    total = 0
    for p in tree(pid):
        try: f = Path(f'/proc/{p}/stat').read_text().rsplit(')', 1)[1].split()
        except (FileNotFoundError, ProcessLookupError): continue
        total += int(f[11]) + int(f[12])
    return total / os.sysconf('SC_CLK_TCK')

def start(srv:dict) -> subprocess.Popen:
    "Start `srv` and wait until its readiness URL answers 200."
    p = subprocess.Popen(srv['cmd'], env={**os.environ, **srv.get('env', {})}, cwd=srv.get('cwd', root),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and p.poll() is None:
        try:
            if httpx.get(srv['url'] + srv['ready'], timeout=1).status_code == 200: return p
        except httpx.TransportError: pass
        time.sleep(0.3)
    stop(p); raise RuntimeError(f"{srv['server']} did not become ready: {' '.join(map(str, srv['cmd']))}")

def started(pid:int) -> int|None:
    "When `pid` started (clock ticks after boot), None once it is gone: tells a process from a later one given its id."
    try: return int(Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[19])
    except (FileNotFoundError, ProcessLookupError): return None

def stop(p:subprocess.Popen):
    "Resume and terminate `p`'s tree; kill what is left of that same tree after 60 s."
    pids = {q: started(q) for q in tree(p.pid)}
    signal_tree(p.pid, signal.SIGCONT)
    p.terminate()
    try: p.wait(60)
    except subprocess.TimeoutExpired: pass
    left = lambda: [q for q, t in pids.items() if started(q) == t]
    deadline = time.time() + 10
    while time.time() < deadline and left(): time.sleep(0.2)
    for q in left():
        try: os.kill(q, signal.SIGKILL)
        except ProcessLookupError: pass
    p.wait()

def wrk(url, img, post, seconds, lua) -> dict:
    out = subprocess.run(['wrk', '-t2', '-c32', f'-d{seconds}s', '--timeout', '10s', '-s', str(lua), url],
                         env={**os.environ, 'IMG': str(img), 'POST': '1' if post else '0'}, capture_output=True, text=True, check=True).stdout
    r = json.loads(out.split('RESULT ', 1)[1])
    return {**r, 'rps': r['requests'] / r['seconds']}

def busy_seconds() -> float:
    "CPU seconds the whole machine has spent busy since boot, all cores."
    f = [int(x) for x in Path('/proc/stat').read_text().split('\n', 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf('SC_CLK_TCK')

def measured(proc, url, img, post, seconds, lua) -> dict:
    "wrk's figures, the server's CPU milliseconds per answered request, and the share of the cores other processes took meanwhile."
    c0, m0, w0, t0 = cpu_seconds(proc.pid), busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    r = wrk(url, img, post, seconds, lua)
    cpu, w1 = cpu_seconds(proc.pid) - c0, resource.getrusage(resource.RUSAGE_CHILDREN)
    others = busy_seconds() - m0 - cpu - (w1.ru_utime + w1.ru_stime - w0.ru_utime - w0.ru_stime)
    return {**r, 'cpu_ms_per_request': cpu * 1000 / max(r['requests'], 1), 'others_cpu_share': max(others, 0) / (time.time() - t0) / os.cpu_count()}

def median_round(runs:list[dict]) -> dict:
    "The round with the median throughput, with every round's req/s."
    return {**sorted(runs, key=lambda r: r['rps'])[len(runs) // 2], 'rounds_rps': [round(r['rps'], 1) for r in runs]}

def label(srv:dict, img:Path) -> str:
    "The label `srv` gives `img` (BentoML's batchable endpoint answers a list of one)."
    r = httpx.post(srv['url'] + '/predict', files={'file': ('x.png', img.read_bytes(), 'image/png')}, timeout=60)
    r.raise_for_status()
    a = r.json()
    return (a[0] if isinstance(a, list) else a)['label']

def logged(db:Path) -> int:
    with sqlite3.connect(db) as c: return c.execute('select count(*) from predictions').fetchone()[0]

PREDICT, TRIVIAL = ('POST /predict', '/predict', True), ('GET /healthz (trivial JSON)', '/healthz', False)

def servers(bundle:Path, work:Path, workers:int=2) -> list[dict]:
    "Every server of the table, with its command, readiness path and endpoints to load."
    env, peers = {'OPSBOOK_BUNDLE': str(bundle), 'BENCH_WORKERS': str(workers)}, str(peers_python())
    def opsbook(name, args, n):
        db = work/f'{bundle.parent.name}-{n}.db'
        return dict(server=f'opsbook-serve, {name}', workers=n, cmd=['opsbook-serve', '--bundle', str(bundle), '--log-db', str(db), *allow(bundle), *args],
                    ready='/readyz', endpoints=[TRIVIAL, PREDICT], db=db)
    out = [opsbook('1 worker', [], 1), opsbook(f'{workers} workers, 1 thread each', ['--workers', str(workers), '--threads', '1'], workers),
           dict(server=f'bare FastAPI + ONNX Runtime, {workers} workers', workers=workers, cwd=bench, env=env, ready='/openapi.json', endpoints=[PREDICT],
                cmd=[sys.executable, '-m', 'uvicorn', 'bare_server:app', '--workers', str(workers), '--log-level', 'warning']),
           dict(server=f'LitServe, {workers} workers (dynamic batching)', workers=workers, cwd=bench, env=env, ready='/health', endpoints=[PREDICT],
                cmd=[peers, 'litserve_server.py']),
           dict(server=f'BentoML, {workers} workers (adaptive batching)', workers=workers, cwd=bench, env=env, ready='/readyz', endpoints=[PREDICT],
                cmd=[str(Path(peers).parent/'bentoml'), 'serve', 'bentoml_server:Classifier', '--host', '127.0.0.1']),
           dict(server='eager PyTorch per request, 1 process', workers=1, env=env, ready='/openapi.json', endpoints=[PREDICT],
                cmd=[sys.executable, '-m', 'uvicorn', 'bench.eager_server:app', '--log-level', 'warning'])]
    for s in out:
        port = free_port()
        s['url'] = f'http://127.0.0.1:{port}'
        s['cmd'] += [str(port), str(workers)] if 'litserve_server.py' in s['cmd'] else ['--port', str(port)]
    return out

def bench_servers(srvs:list[dict], img:Path, seconds:int, rounds:int, warmup:int, lua:Path) -> list[dict]:
    "Start every server, check they agree, then load them in interleaved rounds, each alone on the machine: one row per endpoint."
    procs = []
    try:
        for s in srvs: procs.append(start(s))
        labels = {s['server']: label(s, img) for s in srvs}
        if len(set(labels.values())) > 1: raise RuntimeError(f'the servers disagree on the label of {img}: {labels}')
        for p in procs: signal_tree(p.pid, signal.SIGSTOP)
        runs = {(s['server'], e[0]): [] for s in srvs for e in s['endpoints']}
        for r in range(-1 if warmup else 0, rounds):
            for s, p in zip(srvs, procs):
                signal_tree(p.pid, signal.SIGCONT)
                if r == 0 and 'db' in s: s['logged_before'] = logged(s['db'])
                label(s, img)
                for name, path, post in s['endpoints']:
                    if r < 0: wrk(s['url'] + path, img, post, warmup, lua)
                    else: runs[s['server'], name].append(measured(p, s['url'] + path, img, post, seconds, lua))
                time.sleep(0.5)  # the requests in flight when wrk stopped are answered and logged
                signal_tree(p.pid, signal.SIGSTOP)
            print(f"round {r + 1} of {rounds} done" if r >= 0 else 'warm-up done', flush=True)
    finally:
        for p in procs: stop(p)
    rows = []
    for s in srvs:
        for name, _, _ in s['endpoints']:
            row = dict(server=s['server'], endpoint=name, workers=s['workers'], **median_round(runs[s['server'], name]))
            if 'db' in s and name == PREDICT[0]:
                row['logged_rows'] = logged(s['db']) - s.get('logged_before', 0)
                row['answered'] = sum(x['requests'] for x in runs[s['server'], name])
            rows.append(row)
    return rows

UNGATED = set()   # the bundles this bench makes, untrained or trained one epoch on purpose (serving cost does not depend
# on the weights): served with --allow-unapproved, since no quality gate would approve them; a --bundle given is served as is

def ungated(path:Path) -> Path:
    "Record `path` as a bundle this bench serves without a quality gate's approval, on purpose."
    UNGATED.add(Path(path).resolve()); return Path(path)

def allow(bundle:Path) -> list[str]:
    "`opsbook-serve`'s --allow-unapproved for a bundle this bench made, nothing for any other."
    return ['--allow-unapproved'] if Path(bundle).resolve() in UNGATED else []

def resnet_bundle(dst:Path, digits) -> Path:
    "An untrained ResNet-18 bundle at 224 px, RGB: serving cost does not depend on the weights."
    from opsbook.learner import LogitsAndEmbedding, create_model
    from opsbook.bundle import write_bundle
    model = LogitsAndEmbedding(create_model('resnet18', 10, n_in=3))
    card = dict(name='resnet18-224-untrained', architecture='resnet18', classes=[str(i) for i in range(10)],
                input=dict(size=224, channels=3, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]), metrics={}, data={}, params={})
    return ungated(write_bundle(model, dst, card, digits.split('valid').iloc[:64]))

def digits_bundle(dst:Path) -> Path:
    "A digits bundle of the default run's architecture and size, briefly trained."
    from opsbook.train import train_bundle
    return ungated(train_bundle(dst, arch='digitnet', size=24, epochs=1, name='digits-bench'))

def ort_ms_per_image(bundle:Path, img:Path, batch:int=32) -> float:
    "ONNX Runtime's CPU time per image at `batch`, one thread (the caller's): the least CPU a prediction can cost."
    from opsbook.bundle import load_bundle
    from opsbook.features import preprocess
    b = load_bundle(bundle, threads=1)
    x = np.repeat(preprocess([Image.open(img)], b.spec), batch, 0)
    for _ in range(5): b.session.run(None, {'image': x})
    t, n = time.process_time(), 0
    while time.process_time() - t < 3: b.session.run(None, {'image': x}); n += 1
    return (time.process_time() - t) * 1000 / n / batch

def commit() -> str:
    "The last commit that changed the opsbook package being served, with '+changes' when its files differ from it."
    import opsbook
    d = Path(opsbook.__file__).parent
    git = lambda *c: subprocess.run(['git', '-C', str(d), *c], capture_output=True, text=True).stdout.strip()
    return git('log', '-1', '--format=%h', '--', '.') + ('+changes' if git('status', '--porcelain', '--', '.') else '')

def row(rows:list[dict], prefix:str) -> dict:
    return next(r for r in rows if r['server'].startswith(prefix) and r['endpoint'] == PREDICT[0])

def targets(name:str, rows:list[dict], workers:int) -> list[dict]:
    """The Hardening issue's targets for opsbook-serve's /predict with `workers` workers: figure, threshold, verdict; and for
    throughput ratios the same ratio from CPU per request (`by_cpu`), which other processes on a shared machine disturb less."""
    ours, bare = row(rows, f'opsbook-serve, {workers} workers'), row(rows, 'bare')
    best = max((row(rows, 'LitServe'), row(rows, 'BentoML')), key=lambda r: r['rps'])
    ratio = lambda peer: (ours['rps'] / peer['rps'], peer['cpu_ms_per_request'] / ours['cpu_ms_per_request'])
    if name == 'digits':
        out = [(f"/predict ≥ 1.5× the best of LitServe and BentoML ({best['server'].split(',')[0]})", *ratio(best), 1.5, '≥'),
               ('/predict ≥ 0.9× the bare endpoint', *ratio(bare), 0.9, '≥'),
               ('/predict p99 ≤ 50 ms at 32 connections (ms)', ours['p99_ms'], None, 50, '≤')]
    else:
        lowest = min(r['p99_ms'] for r in rows if r['endpoint'] == PREDICT[0] and r is not ours)
        out = [('/predict ≥ 0.95× the bare endpoint', *ratio(bare), 0.95, '≥'),
               ('/predict errors (timeouts, non-2xx) = 0', ours['errors'] + ours['non2xx'], None, 0, '≤'),
               ("/predict p99 below every other server's (ms, vs their lowest)", ours['p99_ms'], None, lowest, '<')]
    ok = {'≥': lambda v, t: v >= t, '≤': lambda v, t: v <= t, '<': lambda v, t: v < t}
    return [dict(target=t, value=round(v, 3), by_cpu=c if c is None else round(c, 3), threshold=round(th, 3), met=ok[op](v, th))
            for t, v, c, th, op in out]

def bench_bundle(name:str, bundle:Path, img:Path, a, lua:Path, work:Path) -> dict:
    rows = bench_servers(servers(bundle, work, a.workers), img, a.seconds, a.rounds, a.warmup, lua)
    return dict(bundle=str(bundle), rows=rows, targets=targets(name, rows, a.workers), ort_ms_per_image=ort_ms_per_image(bundle, img))

def show(table:dict):
    print(f"{'bundle':13} {'server':45} {'endpoint':27} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'err':>4} {'CPU ms/req':>10} {'others':>6} {'answered':>8} {'logged':>7}  rounds req/s")
    for b, res in table.items():
        for r in res['rows']:
            print(f"{b:13} {r['server']:45} {r['endpoint']:27} {r['rps']:7.1f} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f} {r['errors'] + r['non2xx']:4d} "
                  f"{r['cpu_ms_per_request']:10.3f} {r['others_cpu_share']:6.0%} {r.get('answered', ''):>8} {r.get('logged_rows', ''):>7}  {r['rounds_rps']}")
        print(f"{b:13} ONNX Runtime alone: {res['ort_ms_per_image']:.3f} ms of CPU per image (batch 32, one thread)")
    for b, res in table.items():
        for t in res['targets']:
            by_cpu = f"(by CPU per request: {t['by_cpu']:.3f})" if t['by_cpu'] is not None else ''
            print(f"{b:13} target: {t['target']:70} {t['value']:9.3f} vs {t['threshold']:<9} {'met' if t['met'] else 'NOT met':8} {by_cpu}")

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--bundle', help='a digits bundle; default: train one like the default run (digitnet, 24 px)')
    ap.add_argument('--resnet', action='store_true', help='also an untrained ResNet-18 bundle at 224 px')
    ap.add_argument('--seconds', type=int, default=8, help='length of one round')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--warmup', type=int, default=2, help='seconds of load on each endpoint before the rounds')
    ap.add_argument('--workers', type=int, default=2, help='worker processes of every multi-worker server')
    ap.add_argument('--out', default=str(bench/'serve.json'))
    a = ap.parse_args()
    from opsbook.data import digits_folder, scan_folder
    digits = scan_folder(digits_folder())
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        lua = work/'bench.lua'; lua.write_text(LUA)
        digit = Path(digits.split('test').path.iloc[0])
        table = {'digits': bench_bundle('digits', Path(a.bundle).resolve() if a.bundle else digits_bundle(work/'digits'/'bundle'), digit, a, lua, work)}
        if a.resnet:
            photo = work/'photo.png'; Image.open(digit).convert('RGB').resize((224, 224)).save(photo)
            table['resnet18-224'] = bench_bundle('resnet18-224', resnet_bundle(work/'resnet'/'bundle', digits), photo, a, lua, work)
    show(table)
    peers = subprocess.run([str(VENV/'bin'/'python'), '-c', 'import litserve, bentoml; print(litserve.__version__, bentoml.__version__)'],
                           capture_output=True, text=True, check=True).stdout.split()
    meta = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f"{platform.machine()}, {os.cpu_count()} cores",
                opsbook_commit=commit(), load='wrk -t2 -c32', seconds=a.seconds, rounds=a.rounds, warmup=a.warmup, workers=a.workers,
                versions=dict(litserve=peers[0], bentoml=peers[1]), loadavg_before=load0, loadavg_after=os.getloadavg())
    Path(a.out).write_text(json.dumps(dict(**meta, results=table), indent=2))
