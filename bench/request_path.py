"""Where a prediction's CPU goes: opsbook-serve beside the bare endpoint, one worker each, under wrk (issue 18, point 13).

Each server (bench/serve.py's digits bundle; the bare FastAPI + ONNX Runtime endpoint of bench/bare_server.py) takes
wrk at 32 connections for `--seconds`, `--rounds` times interleaved; in the first round py-spy samples the whole
process (every thread, `--nonblocking`, 100 Hz). A sample counts as busy unless its innermost frame is a wait (a
condition, the executor's queue, the event loop's select). The busy samples are sorted into what the bare endpoint
also does (ONNX Runtime, multipart parsing, decoding and preprocessing, the framework) and what only opsbook does
(the request log, the drift statistics, the prediction features, metrics and middleware, batching), each as
milliseconds of CPU per answered request. Throughput is each server's median round, from wrk.

`python bench/request_path.py [--seconds 10] [--rounds 3]`; needs wrk and py-spy (`pip install py-spy`, not a project
dependency). Prints a table, writes bench/request_path.json and the raw samples beside it (bench/request_path-*.txt, ignored).
"""
import argparse, json, os, platform, re, shutil, subprocess, sys, tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from serve import LUA, commit, digits_bundle, free_port, start, stop, wrk

bench = Path(__file__).resolve().parent
IDLE = re.compile(r'^(Condition\.wait|_worker \(concurrent|.*select|Runner\.run|Event\.wait|Thread\.join|_wait_for_tstate_lock)')
PARTS = [  # (part, pattern of a frame): a sample goes to the part of its innermost frame that matches one
    ('ONNX Runtime', r'onnxruntime'),
    ('request log (SQLite writer)', r'opsbook/requestlog'),
    ('drift statistics of the image', r'pixel_stats'),
    ('prediction features, log row, top-k', r'prediction_features|log_row|entropy|softmax|uuid4|<listcomp> \(opsbook/serve'),
    ('decode and preprocess', r'load_image|preprocess|PIL/|header_pixels|open_model'),
    ('multipart parsing', r'python_multipart|formparsers|_get_form'),
    ('metrics and middleware', r'prometheus_client|(Measure|BodyLimit|Admitted|Admission)\S* \(opsbook/'),
    ('batching (hand-off to the model thread)', r'opsbook/batcher|ThreadPoolExecutor\.submit|Condition\.notify|call_soon_threadsafe'),
    ('FastAPI, Starlette, pydantic', r'fastapi/|starlette|pydantic'),
    ('uvicorn and asyncio', r'uvicorn|asyncio|httptools'),
]

def servers(bundle:Path, work:Path) -> dict:
    "The two servers, one worker each."
    po, pb = free_port(), free_port()
    return {'opsbook': dict(url=f'http://127.0.0.1:{po}', ready='/readyz',
                            cmd=['opsbook-serve', '--bundle', str(bundle), '--log-db', str(work/'log.db'), '--allow-unapproved',
                                 '--workers', '1', '--threads', '1', '--port', str(po)]),
            'bare': dict(url=f'http://127.0.0.1:{pb}', ready='/openapi.json', cwd=str(bench),
                         env={'OPSBOOK_BUNDLE': str(bundle), 'BENCH_WORKERS': '1'},
                         cmd=[sys.executable, '-m', 'uvicorn', 'bare_server:app', '--workers', '1', '--log-level', 'warning',
                              '--port', str(pb)])}

def parts(raw:Path) -> Counter:
    "Busy samples of py-spy's `raw` output by part."
    out = Counter()
    for line in raw.read_text().splitlines():
        stack, n = line.rsplit(' ', 1)
        frames = [f for f in stack.split(';') if f and not f.startswith(('process ', 'thread '))]
        if not frames or IDLE.match(frames[-1]): continue
        out[next((p for f in reversed(frames) for p, rx in PARTS if re.search(rx, f)), 'other')] += int(n)   # its innermost known frame
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seconds', type=int, default=10)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--out', default=str(bench/'request_path.json'))
    a = ap.parse_args()
    for tool in ('wrk', 'py-spy'):
        if not shutil.which(tool): sys.exit(f"{tool} is missing: apt-get install wrk / pip install py-spy")
    from opsbook.data import digits_folder, scan_folder
    img = Path(scan_folder(digits_folder()).split('test').path.iloc[0])
    load0, runs, samples = os.getloadavg(), {}, {}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d); lua = work/'bench.lua'; lua.write_text(LUA)
        bundle = digits_bundle(work/'digits'/'bundle')
        for rnd in range(a.rounds):
            for name, srv in servers(bundle, work).items():
                p = start(srv)
                try:
                    wrk(srv['url'] + '/predict', img, True, 3, lua)                                      # warm up
                    raw = bench/f'request_path-{name}.txt'
                    spy = subprocess.Popen(['py-spy', 'record', '-d', str(a.seconds - 2), '-r', '100', '-f', 'raw', '-o', str(raw),
                                            '-p', str(p.pid), '--subprocesses', '--nonblocking'],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if rnd == 0 else None
                    r = wrk(srv['url'] + '/predict', img, True, a.seconds, lua)
                    if spy: spy.wait(); samples[name] = (parts(raw), r['rps'] * (a.seconds - 2))
                    runs.setdefault(name, []).append(r)
                finally: stop(p)
    rps = {k: sorted(x['rps'] for x in v)[len(v) // 2] for k, v in runs.items()}
    p99 = {k: sorted(x['p99_ms'] for x in v)[len(v) // 2] for k, v in runs.items()}
    ms = {k: {part: round(n * 10 / answered, 4) for part, n in c.items()} for k, (c, answered) in samples.items()}  # 100 Hz: 10 ms a sample
    res = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f"{platform.machine()}, {os.cpu_count()} cores",
               opsbook_commit=commit(), loadavg_before=load0, loadavg_after=os.getloadavg(), seconds=a.seconds, rounds=a.rounds,
               rps=rps, p99_ms=p99, ratio=round(rps['opsbook'] / rps['bare'], 3), cpu_ms_per_request=ms,
               cpu_ms_total={k: round(sum(v.values()), 4) for k, v in ms.items()})
    Path(a.out).write_text(json.dumps(res, indent=1) + '\n')
    print(f"throughput (median of {a.rounds}): opsbook {rps['opsbook']:.0f}/s, bare {rps['bare']:.0f}/s, ratio {res['ratio']}; "
          f"p99 {p99['opsbook']:.0f} ms vs {p99['bare']:.0f} ms")
    print(f"{'CPU ms per answered request':45} {'opsbook':>8} {'bare':>8}")
    for part in [p for p, _ in PARTS] + ['other']:
        print(f"{part:45} {ms['opsbook'].get(part, 0):8.3f} {ms['bare'].get(part, 0):8.3f}")
    print(f"{'all':45} {res['cpu_ms_total']['opsbook']:8.3f} {res['cpu_ms_total']['bare']:8.3f}")

if __name__ == '__main__': main()
