"""Serving throughput and latency with wrk at 32 connections, side by side in one run:
the trivial JSON endpoint (`async def` returning a dict: the framework's ceiling), opsbook-serve's /predict,
and an eager-PyTorch per-request endpoint (bench/eager_server.py), for the digits bundle and a ResNet-18
bundle at 224 px; opsbook-serve with one worker and with two. Each is measured `--rounds` times,
interleaved, and the median round is reported: the machines are shared and a single round can be off by 20%.
It also reports the server's CPU time per request, and ONNX Runtime's CPU time per image, the least a
prediction can cost.

`python bench/serve.py --bundle runs/<run>/bundle [--seconds 8] [--rounds 3]`; prints a table, writes
bench/serve.json. Needs wrk (Debian package `wrk`).
"""
import argparse, json, os, platform, shutil, socket, sqlite3, subprocess, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
import httpx, numpy as np
from PIL import Image

root = Path(__file__).resolve().parent.parent
LUA = r'''
local f = io.open(os.getenv("IMG"), "rb"); local data = f:read("*all"); f:close()
if os.getenv("POST") == "1" then
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=opsbookbench"
  wrk.body = "--opsbookbench\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n" .. data .. "\r\n--opsbookbench--\r\n"
end
done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format('RESULT {"requests": %d, "seconds": %f, "errors": %d, "non2xx": %d, "p50_ms": %f, "p99_ms": %f}\n',
    s.requests, s.duration / 1e6, e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
'''

def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def start(cmd, port, env=None) -> subprocess.Popen:
    p = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            httpx.get(f'http://127.0.0.1:{port}/openapi.json', timeout=1); return p
        except httpx.TransportError: time.sleep(0.2)
    p.kill(); raise TimeoutError(cmd)

def wrk(url, img, post, seconds, lua) -> dict:
    out = subprocess.run(['wrk', '-t2', '-c32', f'-d{seconds}s', '--timeout', '10s', '-s', str(lua), url],
                         env={**os.environ, 'IMG': str(img), 'POST': '1' if post else '0'}, capture_output=True, text=True, check=True).stdout
    r = json.loads(out.split('RESULT ', 1)[1])
    return {**r, 'rps': r['requests'] / r['seconds']}

def resnet_bundle(dst:Path, digits) -> Path:
    "An untrained ResNet-18 bundle at 224 px, RGB: serving cost does not depend on the weights."
    from opsbook.learner import create_model
    from opsbook.bundle import write_bundle
    model = create_model('resnet18', 10, n_in=3)
    card = dict(name='resnet18-224-untrained', architecture='resnet18', classes=[str(i) for i in range(10)],
                input=dict(size=224, channels=3, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]), metrics={}, data={}, params={})
    return write_bundle(model, dst, card, digits.split('valid').iloc[:64])

def cpu_seconds(pid:int) -> float:
    "CPU seconds used so far by process `pid` and its children (uvicorn's workers)."
    def stat(p): return Path(f'/proc/{p}/stat').read_text().rsplit(')', 1)[1].split()
    pids = [pid] + [int(p) for p in os.listdir('/proc') if p.isdigit() and Path(f'/proc/{p}/stat').exists() and int(stat(p)[1]) == pid]
    return sum(int(f[11]) + int(f[12]) for f in map(stat, pids)) / os.sysconf('SC_CLK_TCK')

def measured(proc, url, img, post, seconds, lua) -> dict:
    "wrk's figures, with the server's CPU milliseconds per answered request."
    c0 = cpu_seconds(proc.pid)
    r = wrk(url, img, post, seconds, lua)
    return {**r, 'cpu_ms_per_request': (cpu_seconds(proc.pid) - c0) * 1000 / max(r['requests'], 1)}

def median_round(runs:list[dict]) -> dict:
    "The round with the median throughput, with every round's req/s."
    return {**sorted(runs, key=lambda r: r['rps'])[len(runs) // 2], 'rounds_rps': [round(r['rps'], 1) for r in runs]}

CONFIGS = {'1 worker': [], '2 workers, 1 thread each': ['--workers', '2', '--threads', '1']}

def bench_server(bundle:Path, config:str, img:Path, seconds:int, rounds:int, lua:Path, work:Path) -> list[dict]:
    "The trivial endpoint and /predict of one opsbook-serve, interleaved `rounds` times, and its request log's rows."
    port, db = free_port(), work/f'{bundle.parent.name}-{len(CONFIGS[config])}.db'
    srv = start([shutil.which('opsbook-serve'), '--bundle', str(bundle), '--port', str(port), '--log-db', str(db), *CONFIGS[config]], port)
    trivial, predict = [], []
    try:
        for _ in range(rounds):
            trivial.append(measured(srv, f'http://127.0.0.1:{port}/healthz', img, False, seconds, lua))
            predict.append(measured(srv, f'http://127.0.0.1:{port}/predict', img, True, seconds, lua))
    finally:
        srv.terminate(); srv.wait(60)
    with sqlite3.connect(db) as c: logged = c.execute('select count(*) from predictions').fetchone()[0]
    return [dict(server=f'opsbook-serve, {config}', endpoint='GET /healthz (trivial JSON)', **median_round(trivial)),
            dict(server=f'opsbook-serve, {config}', endpoint='POST /predict', **median_round(predict), logged_rows=logged,
                 answered=sum(r['requests'] for r in predict))]

def bench_peer(bundle:Path, img:Path, seconds:int, rounds:int, lua:Path) -> dict:
    port = free_port()
    eager = start([sys.executable, '-m', 'uvicorn', 'bench.eager_server:app', '--port', str(port), '--log-level', 'warning'], port, {'OPSBOOK_BUNDLE': str(bundle)})
    try: peer = [measured(eager, f'http://127.0.0.1:{port}/predict', img, True, seconds, lua) for _ in range(rounds)]
    finally: eager.terminate(); eager.wait(60)
    return dict(server='eager PyTorch per request (the peer)', endpoint='POST /predict', **median_round(peer))

def ort_ms_per_image(bundle:Path, img:Path, batch:int=32) -> float:
    "ONNX Runtime's time per image at `batch`, one thread: the least CPU a prediction can cost."
    from opsbook.bundle import load_bundle, preprocess
    b = load_bundle(bundle, threads=1)
    x = np.repeat(preprocess([Image.open(img)], b.spec), batch, 0)
    for _ in range(5): b.session.run(None, {'image': x})
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < 3: b.session.run(None, {'image': x}); n += 1
    return (time.perf_counter() - t) * 1000 / n / batch

def bench_bundle(bundle:Path, img:Path, seconds:int, rounds:int, lua:Path, work:Path) -> dict:
    rows = [r for c in CONFIGS for r in bench_server(bundle, c, img, seconds, rounds, lua, work)] + [bench_peer(bundle, img, seconds, rounds, lua)]
    return dict(rows=rows, ort_ms_per_image=ort_ms_per_image(bundle, img))

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--bundle', required=True)
    ap.add_argument('--seconds', type=int, default=8)
    ap.add_argument('--rounds', type=int, default=3)
    a = ap.parse_args()
    from opsbook.data import digits_folder, scan_folder
    digits = scan_folder(digits_folder())
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        lua = work/'bench.lua'; lua.write_text(LUA)
        digit = Path(digits.split('test').path.iloc[0])
        photo = work/'photo.png'; Image.open(digit).convert('RGB').resize((224, 224)).save(photo)
        table = {'digits': bench_bundle(Path(a.bundle), digit, a.seconds, a.rounds, lua, work),
                 'resnet18-224': bench_bundle(resnet_bundle(work/'resnet'/'bundle', digits), photo, a.seconds, a.rounds, lua, work)}
    print(f"{'bundle':13} {'server':38} {'endpoint':27} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'err':>4} {'CPU ms/req':>10} {'answered':>8} {'logged':>7}  rounds req/s")
    for b, res in table.items():
        for r in res['rows']:
            print(f"{b:13} {r['server']:38} {r['endpoint']:27} {r['rps']:7.1f} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f} {r['errors'] + r['non2xx']:4d} "
                  f"{r['cpu_ms_per_request']:10.3f} {r.get('answered', ''):>8} {r.get('logged_rows', ''):>7}  {r['rounds_rps']}")
        rows, peer = res['rows'], res['rows'][-1]['rps']
        for trivial, predict in zip(rows[:-1:2], rows[1:-1:2]):
            print(f"{b:13} {trivial['server']:38} predict / trivial = {predict['rps'] / trivial['rps']:.2f}, predict / peer = {predict['rps'] / peer:.1f}x")
        print(f"{b:13} ONNX Runtime alone: {res['ort_ms_per_image']:.3f} ms of CPU per image (batch 32, one thread)")
    meta = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f"{platform.machine()}, {os.cpu_count()} cores",
                load='wrk -t2 -c32', seconds=a.seconds, rounds=a.rounds)
    (root/'bench'/'serve.json').write_text(json.dumps(dict(**meta, results=table), indent=2))
