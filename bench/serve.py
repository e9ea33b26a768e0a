"""Serving throughput and latency with wrk at 32 connections, side by side in one run:
the trivial JSON endpoint (the framework's ceiling), opsbook-serve's /predict, and an eager-PyTorch
per-request endpoint (bench/eager_server.py), for the digits bundle and a ResNet-18 bundle at 224 px.

`python bench/serve.py --bundle runs/<run>/bundle [--seconds 10]`; prints a table, writes bench/serve.json.
Needs wrk (Debian package `wrk`).
"""
import argparse, json, os, platform, shutil, socket, sqlite3, subprocess, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
import httpx
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

def bench_bundle(bundle:Path, img:Path, seconds:int, lua:Path, work:Path, trivial:bool) -> list[dict]:
    rows, port, db = [], free_port(), work/f'{bundle.parent.name}.db'
    srv = start([shutil.which('opsbook-serve'), '--bundle', str(bundle), '--port', str(port), '--log-db', str(db)], port)
    try:
        if trivial: rows.append(dict(endpoint='GET /healthz (trivial JSON)', **wrk(f'http://127.0.0.1:{port}/healthz', img, False, seconds, lua)))
        rows.append(dict(endpoint='POST /predict (opsbook-serve)', **wrk(f'http://127.0.0.1:{port}/predict', img, True, seconds, lua)))
    finally:
        srv.terminate(); srv.wait(60)
    with sqlite3.connect(db) as c: rows[-1]['logged_rows'] = c.execute('select count(*) from predictions').fetchone()[0]
    port = free_port()
    eager = start([sys.executable, '-m', 'uvicorn', 'bench.eager_server:app', '--port', str(port), '--log-level', 'warning'], port, {'OPSBOOK_BUNDLE': str(bundle)})
    try: rows.append(dict(endpoint='POST /predict (eager PyTorch, per request)', **wrk(f'http://127.0.0.1:{port}/predict', img, True, seconds, lua)))
    finally: eager.terminate(); eager.wait(60)
    return rows

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--bundle', required=True)
    ap.add_argument('--seconds', type=int, default=10)
    a = ap.parse_args()
    from opsbook.data import digits_folder, scan_folder
    digits = scan_folder(digits_folder())
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        lua = work/'bench.lua'; lua.write_text(LUA)
        digit = Path(digits.split('test').path.iloc[0])
        photo = work/'photo.png'; Image.open(digit).convert('RGB').resize((224, 224)).save(photo)
        table = {'digits': bench_bundle(Path(a.bundle), digit, a.seconds, lua, work, trivial=True),
                 'resnet18-224': bench_bundle(resnet_bundle(work/'resnet'/'bundle', digits), photo, a.seconds, lua, work, trivial=True)}
    print(f"{'bundle':14} {'endpoint':44} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'non2xx':>6} {'logged':>7}")
    for b, rows in table.items():
        for r in rows: print(f"{b:14} {r['endpoint']:44} {r['rps']:8.1f} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f} {r['errors']:6d} {r['non2xx']:6d} {r.get('logged_rows', ''):>7}")
        rps = {r['endpoint'].split(' (')[1].split(',')[0].rstrip(')'): r['rps'] for r in rows}
        print(f"{b:14} predict / trivial = {rps['opsbook-serve'] / rps['trivial JSON']:.2f}, opsbook / eager = {rps['opsbook-serve'] / rps['eager PyTorch']:.1f}x")
    meta = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f"{platform.machine()}, {os.cpu_count()} cores",
                load='wrk -t2 -c32', seconds=a.seconds)
    (root/'bench'/'serve.json').write_text(json.dumps(dict(**meta, results=table), indent=2))
