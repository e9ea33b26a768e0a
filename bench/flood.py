"""A flood of worst-case valid uploads against `opsbook-serve --workers 2`: 64 concurrent uploads of one kind per
phase, each phase on a fresh server:

- `16-bit`: a 16-bit grayscale PNG, square, as many pixels as the service's `max_pixels` allows and well under its
  upload limit: the most memory one valid upload can ask for;
- `8-bit small`: an 8-bit PNG of 4000×4000 that compresses under 16 KB, the size below which the service decodes
  uploads on its event loop instead of a thread.

During each phase it samples each worker's resident memory every 20 ms (and reads the kernel's peak, VmHWM, reset
before the phase), while a separate process probes `GET /healthz` every 20 ms on a new connection each time, as a load
balancer's health check does, without waiting for the earlier probes: a stalled server shows in every probe it delays,
each timed from when it was due. It counts the 5xx answers of both. Targets (Hardening issue): every worker under 1 GB,
/healthz p99 under 100 ms, no 5xx.

The server runs under an address-space limit per process (`--cap-gb`, 4 by default) so that a service that would
take tens of GB fails its allocations instead of taking a shared machine's memory.

`python bench/flood.py [--bundle DIR] [--uploads 64] [--workers 2] [--cap-gb 4]`: without `--bundle` it trains a
digits bundle as bench/serve.py does. Prints a table, writes bench/flood.json.
"""
import argparse, asyncio, io, json, math, multiprocessing as mp, os, platform, resource, subprocess, sys, tempfile, threading, time
from datetime import datetime, timezone
from pathlib import Path
import httpx, numpy as np
from PIL import Image
from serve import allow, commit, digits_bundle, free_port, stop, tree

bench = Path(__file__).resolve().parent

def png(img:Image.Image) -> bytes:
    b = io.BytesIO(); img.save(b, 'PNG', optimize=True); return b.getvalue()

def uploads(max_pixels:int, max_upload_mb:float) -> dict[str, bytes]:
    "The worst-case valid uploads, by phase name; each checked against the service's limits."
    side = math.isqrt(max_pixels)
    ramp = np.add.outer(np.arange(side, dtype=np.uint32), np.arange(side, dtype=np.uint32)) * 5 % 65536
    out = {'16-bit': png(Image.fromarray(ramp.astype(np.uint16))), '8-bit small': png(Image.new('L', (4000, 4000)))}
    for k, v in out.items():
        if len(v) > max_upload_mb * 2**20: raise ValueError(f'the {k} upload is {len(v):,} bytes, over the service limit of {max_upload_mb} MB: make it compress better')
    if len(out['8-bit small']) >= 16 * 1024: raise ValueError(f"the 8-bit upload is {len(out['8-bit small']):,} bytes; it must stay under 16 KB")
    return out

def describe(data:bytes) -> dict:
    im = Image.open(io.BytesIO(data))
    return dict(width=im.width, height=im.height, mode=im.mode, bytes=len(data))

def cap(gb:float):
    "For `preexec_fn`: limit the address space of the server's processes (its workers inherit it); 0: no limit."
    n = int(gb * 2**30) if gb else resource.RLIM_INFINITY
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (n, n))

def start(bundle:Path, port:int, workers:int, db:Path, gb:float) -> subprocess.Popen:
    p = subprocess.Popen(['opsbook-serve', '--bundle', str(bundle), '--port', str(port), '--workers', str(workers), '--threads', '1', '--log-db', str(db), *allow(bundle)],
                         preexec_fn=cap(gb), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        try:
            if httpx.get(f'http://127.0.0.1:{port}/readyz', timeout=1).status_code == 200 and len(worker_pids(p.pid)) == workers: return p
        except httpx.TransportError: pass
        time.sleep(0.3)
    stop(p); raise RuntimeError('opsbook-serve did not become ready')

def worker_pids(pid:int) -> list[int]:
    "uvicorn's worker processes under `pid` (multiprocessing's spawned children, not its resource tracker)."
    def cmd(p):
        try: return Path(f'/proc/{p}/cmdline').read_bytes()
        except (FileNotFoundError, ProcessLookupError): return b''
    return [p for p in tree(pid)[1:] if b'spawn_main' in cmd(p)]

def status_kb(pid:int, field:str) -> int:
    "A field of /proc/<pid>/status in kB, 0 once the process is gone."
    try: return int(next(l for l in Path(f'/proc/{pid}/status').read_text().splitlines() if l.startswith(field + ':')).split()[1])
    except (FileNotFoundError, ProcessLookupError, StopIteration): return 0

class Sampler(threading.Thread):
    "The highest resident memory (MB) seen of each worker of `pid`, sampled every `every` s; the worker list refreshed every 0.5 s."
    def __init__(self, pid:int, every:float=0.02):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.done = pid, every, {}, threading.Event()

    def run(self):
        pids, seen = [], 0
        while not self.done.is_set():
            if time.time() - seen > 0.5: pids, seen = worker_pids(self.pid), time.time()
            for p in pids: self.peak[p] = max(self.peak.get(p, 0), status_kb(p, 'VmRSS') / 1024)
            time.sleep(self.every)

def probe(url:str, stop_at, out, every:float=0.02):
    "GET `url` every `every` s on new connections, not waiting for earlier probes, until `stop_at`; send (ms since due, status) to `out`."
    async def run() -> list:
        res = []
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=None, max_keepalive_connections=0)) as c:
            async def one(due):
                try: s = (await c.get(url)).status_code
                except httpx.HTTPError as e: s = type(e).__name__
                res.append(((time.perf_counter() - due) * 1000, s))
            tasks, t0 = [], time.perf_counter()
            while not stop_at.is_set():
                due = t0 + len(tasks) * every
                await asyncio.sleep(max(0, due - time.perf_counter()))
                tasks.append(asyncio.create_task(one(due)))
            await asyncio.gather(*tasks)
        return res
    out.send(asyncio.run(run()))

async def flood(url:str, data:bytes, n:int) -> list:
    "Send `data` `n` times at once; each answer's status, or the error's name."
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=n)) as c:
        async def one():
            try: return (await c.post(url, files={'file': ('flood.png', data, 'image/png')})).status_code
            except httpx.HTTPError as e: return type(e).__name__
        return await asyncio.gather(*[one() for _ in range(n)])

def counts(xs) -> dict: return {str(k): sum(1 for x in xs if x == k) for k in sorted(set(xs), key=str)}
def is_5xx(s) -> bool: return isinstance(s, int) and s >= 500

def phase(bundle:Path, data:bytes, a, work:Path) -> dict:
    "One flood of `a.uploads` concurrent copies of `data` on a fresh server: memory, /healthz latency and answers."
    port = free_port()
    srv = start(bundle, port, a.workers, work/f'flood-{port}.db', a.cap_gb)
    try:
        workers = worker_pids(srv.pid)
        idle = {p: status_kb(p, 'VmRSS') / 1024 for p in workers}
        for p in workers: Path(f'/proc/{p}/clear_refs').write_text('5')  # resets VmHWM to the current RSS
        ctx = mp.get_context('spawn')
        stop_at, (rx, tx) = ctx.Event(), ctx.Pipe(duplex=False)
        prober = ctx.Process(target=probe, args=(f'http://127.0.0.1:{port}/healthz', stop_at, tx))
        prober.start()
        sampler = Sampler(srv.pid); sampler.start()
        time.sleep(1)
        t = time.time()
        answers = asyncio.run(flood(f'http://127.0.0.1:{port}/predict', data, a.uploads))
        seconds = time.time() - t
        time.sleep(1)
        stop_at.set(); probes = rx.recv(); prober.join()
        sampler.done.set(); sampler.join()
        hwm = {p: status_kb(p, 'VmHWM') / 1024 for p in workers}
        after = worker_pids(srv.pid)
    finally:
        stop(srv)
    ms = np.array([m for m, _ in probes])
    return dict(upload=describe(data), uploads=a.uploads, seconds=round(seconds, 2), answers=counts(answers), upload_5xx=sum(map(is_5xx, answers)),
                workers=[dict(pid=p, idle_mb=round(idle.get(p, 0)), peak_sampled_mb=round(sampler.peak.get(p, 0)), peak_hwm_mb=round(hwm.get(p, 0)))
                         for p in sorted(set(workers) | set(sampler.peak))],
                worker_restarts=len(set(after) - set(workers)),
                healthz=dict(probes=len(probes), p50_ms=round(float(np.percentile(ms, 50)), 1), p99_ms=round(float(np.percentile(ms, 99)), 1),
                             max_ms=round(float(ms.max()), 1), answers=counts([s for _, s in probes]), five_xx=sum(is_5xx(s) for _, s in probes)))

def targets(r:dict) -> list[dict]:
    peak = max(max(w['peak_sampled_mb'], w['peak_hwm_mb']) for w in r['workers'])
    return [dict(target='every worker under 1 GB (peak MB)', value=peak, threshold=1024, met=peak < 1024),
            dict(target='/healthz p99 under 100 ms', value=r['healthz']['p99_ms'], threshold=100, met=r['healthz']['p99_ms'] < 100),
            dict(target='no 5xx (uploads + probes)', value=r['upload_5xx'] + r['healthz']['five_xx'], threshold=0,
                 met=r['upload_5xx'] + r['healthz']['five_xx'] == 0)]

def show(res:dict):
    print(f"{'phase':12} {'upload':24} {'KB':>6} {'s':>6} {'5xx':>4} {'answers':32} {'worker peak MB (sampled/HWM)':30} {'restarts':>8} "
          f"{'/healthz p50':>12} {'p99':>7} {'max':>7} {'probes':>6} {'5xx':>4}")
    for k, r in res.items():
        u, h = r['upload'], r['healthz']
        peaks = ', '.join(f"{w['peak_sampled_mb']}/{w['peak_hwm_mb']}" for w in r['workers'])
        print(f"{k:12} {u['width']}x{u['height']} {u['mode']:8} {u['bytes'] / 1024:6.0f} {r['seconds']:6.1f} {r['upload_5xx']:4d} {json.dumps(r['answers']):32} "
              f"{peaks:30} {r['worker_restarts']:8d} {h['p50_ms']:12.1f} {h['p99_ms']:7.1f} {h['max_ms']:7.1f} {h['probes']:6d} {h['five_xx']:4d}")
    for k, r in res.items():
        for t in r['targets']: print(f"{k:12} target: {t['target']:38} {t['value']:>8} vs {t['threshold']:<6} {'met' if t['met'] else 'NOT met'}")

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--bundle', help='a bundle; default: train a digits bundle like the default run (digitnet, 24 px)')
    ap.add_argument('--uploads', type=int, default=64, help='concurrent uploads per phase')
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--cap-gb', type=float, default=4, help='address-space limit of each server process; 0: none')
    ap.add_argument('--out', default=str(bench/'flood.json'))
    a = ap.parse_args()
    from opsbook.serve import Settings
    limits = {k: Settings.model_fields[k].default for k in ('max_pixels', 'max_upload_mb')}
    data = uploads(limits['max_pixels'], limits['max_upload_mb'])
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        bundle = Path(a.bundle).resolve() if a.bundle else digits_bundle(work/'digits'/'bundle')
        res = {k: phase(bundle, v, a, work) for k, v in data.items()}
    for r in res.values(): r['targets'] = targets(r)
    show(res)
    meta = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f"{platform.machine()}, {os.cpu_count()} cores",
                opsbook_commit=commit(), service_limits=limits, workers=a.workers, cap_gb=a.cap_gb, loadavg=os.getloadavg())
    Path(a.out).write_text(json.dumps(dict(**meta, phases=res), indent=2))
