"""The API image: size and start-to-ready of its two targets, `api` (serving and drift checks, the default) and
`serve` (serving only), built with `.ci/docker` on the debootstrapped base and the default digits bundle.
Start-to-ready is the wall time from `docker run -d` to the first 200 from /readyz (polled every 20 ms) over
`--starts` cold starts of each image, interleaved, with one worker per core (the default) and with one worker;
memory is the container's after one prediction (docker stats).

`python bench/api_image.py [--bundle runs/<run>/bundle] [--starts 7]`; prints a table, writes bench/api_image.json.
"""
import argparse, json, platform, socket, statistics, subprocess, time
from datetime import datetime, timezone
from pathlib import Path
import httpx

root = Path(__file__).resolve().parent.parent
DOCKER = '/usr/bin/docker'
OPEN = ['-e', 'OPSBOOK_NO_AUTH=1']     # published on 127.0.0.1 only: the bench runs the service without a key

def sh(*cmd, **kw) -> str: return subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True, **kw).stdout.strip()

def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def build(target:str, tag:str, bundle:str) -> float:
    "Build `target` of docker/api.Dockerfile as `tag` from scratch (no cache); seconds taken."
    t0 = time.time()
    sh('bash', '.ci/docker', 'build', 'docker/api.Dockerfile', tag, '--target', target, '--no-cache', '--build-arg', f'BUNDLE={bundle}')
    return time.time() - t0

def start_to_ready(tag:str, *env) -> float:
    "Seconds from `docker run -d` to /readyz answering 200."
    port = free_port()
    t0 = time.time()
    cid = sh(DOCKER, 'run', '-d', '-p', f'127.0.0.1:{port}:8000', *OPEN, *env, tag)
    try:
        while time.time() - t0 < 60:
            try:
                if httpx.get(f'http://127.0.0.1:{port}/readyz', timeout=1).status_code == 200: return time.time() - t0
            except httpx.TransportError: pass
            time.sleep(0.02)
        raise TimeoutError(f'{tag} not ready in 60 s: {sh(DOCKER, "logs", cid)}')
    finally: sh(DOCKER, 'rm', '-f', cid)

def memory_after_a_prediction(tag:str, png:Path) -> float:
    "MiB the container uses after answering one prediction."
    port = free_port()
    cid = sh(DOCKER, 'run', '-d', '-p', f'127.0.0.1:{port}:8000', *OPEN, tag)
    try:
        for _ in range(300):
            try:
                if httpx.get(f'http://127.0.0.1:{port}/readyz', timeout=1).status_code == 200: break
            except httpx.TransportError: time.sleep(0.1)
        httpx.post(f'http://127.0.0.1:{port}/predict', files={'file': ('d.png', png.read_bytes())}).raise_for_status()
        used = sh(DOCKER, 'stats', '--no-stream', '--format', '{{.MemUsage}}', cid).split('/')[0].strip()
        return float(used[:-3]) * {'KiB': 1 / 1024, 'MiB': 1, 'GiB': 1024}[used[-3:]]
    finally: sh(DOCKER, 'rm', '-f', cid)

def main(bundle:str, starts:int):
    from opsbook.data import digits_folder, scan_folder
    png = Path(scan_folder(digits_folder()).split('test').path.iloc[0])
    sh('bash', '.ci/docker', 'setup')
    rows, configs = [], {'per_core': (), 'one_worker': ('-e', 'OPSBOOK_WORKERS=1')}
    try:
        tags = {t: f'opsbook-api:bench-{t}' for t in ('api', 'serve')}
        built = {t: build(t, tag, bundle) for t, tag in tags.items()}
        times = {(t, w): [] for t in tags for w in configs}
        for _ in range(starts):                         # interleaved: the machine is shared, its load drifts
            for t, tag in tags.items():
                for w, env in configs.items(): times[t, w].append(start_to_ready(tag, *env))
        for t, tag in tags.items():
            size = int(sh(DOCKER, 'image', 'inspect', '--format', '{{.Size}}', tag)) / 1e6
            rows.append(dict(target=t, image_mb=round(size), build_s=round(built[t], 1), memory_mib=round(memory_after_a_prediction(tag, png)),
                             **{f'ready_s_{w}': [round(x, 2) for x in times[t, w]] for w in configs}))
    finally: sh('bash', '.ci/docker', 'stop')
    med = lambda xs: f'{statistics.median(xs):.2f} ({max(xs):.2f})'
    print('| target | image MB | build s (no cache) | start to ready s, one worker per core: median (max) | one worker | memory MiB after a prediction |')
    print('|---|---:|---:|---:|---:|---:|')
    for r in rows: print(f"| {r['target']} | {r['image_mb']} | {r['build_s']} | {med(r['ready_s_per_core'])} | {med(r['ready_s_one_worker'])} | {r['memory_mib']} |")
    out = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=platform.processor() or platform.machine(),
               bundle=bundle, starts=starts, rows=rows)
    (root/'bench'/'api_image.json').write_text(json.dumps(out, indent=1))

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--bundle', default='runs/ci/bundle', help='a bundle folder inside the repository (trained with train_bundle when missing; judged by the quality gate)')
    p.add_argument('--starts', type=int, default=7)
    a = p.parse_args()
    if not (root/a.bundle/'bundle.json').exists():
        from opsbook.train import train_bundle
        train_bundle(root/a.bundle)
    from opsbook.evaluate import gate, check_approved
    check_approved(gate(root/a.bundle), root/a.bundle)          # the image serves approved bundles only
    main(a.bundle, a.starts)
