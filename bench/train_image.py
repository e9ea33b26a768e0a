"""The training image: built with `.ci/docker` on the debootstrapped base (torch from PyPI: the CUDA build, which
also runs on CPU), then one papermill run of nbs/train.ipynb in it with tiny epochs on the embedded digits,
its output on a volume. Reports the image's size, the build and run times, and the bundle the run wrote, loaded
back inside the image.

`python bench/train_image.py [--epochs 1] [--cached] [--out bench/train_image.json]`; prints a table, writes the JSON.
"""
import argparse, json, platform, subprocess, time, uuid
from datetime import datetime, timezone
from pathlib import Path

root = Path(__file__).resolve().parent.parent
DOCKER = '/usr/bin/docker'
TAG = 'opsbook-train:bench'

def sh(*cmd, timeout=None) -> str:
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout)
    if r.returncode: raise RuntimeError(f'{" ".join(cmd)} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-4000:]}')
    return r.stdout.strip()

def build(cached:bool) -> float:
    "Build docker/train.Dockerfile as TAG; seconds taken."
    t0 = time.time()
    sh('bash', '.ci/docker', 'build', 'docker/train.Dockerfile', TAG, *([] if cached else ['--no-cache']), timeout=3600)
    return time.time() - t0

def tiny_run(epochs:int) -> dict:
    "One papermill run in the image on a fresh volume: its wall time and the card of the bundle it wrote."
    vol = f'opsbook-bench-{uuid.uuid4().hex[:8]}'
    sh(DOCKER, 'volume', 'create', vol)
    try:
        t0 = time.time()
        sh(DOCKER, 'run', '--rm', '--shm-size', '1g', '-v', f'{vol}:/runs', TAG, '/runs/report.ipynb',
           '-p', 'epochs', str(epochs), '-p', 'run_name', 'tiny', '-p', 'gate_margin', '-1', timeout=1800)   # a smoke run: not gated
        secs = time.time() - t0
        card = sh(DOCKER, 'run', '--rm', '-v', f'{vol}:/runs', '--entrypoint', 'python3', TAG, '-c',
                  "from opsbook.bundle import load_bundle; print(load_bundle('/runs/tiny/bundle').card.model_dump_json())")
        return dict(run_s=round(secs, 1), card=json.loads(card))
    finally: sh(DOCKER, 'volume', 'rm', '-f', vol)

def main(epochs:int, cached:bool, out:Path):
    sh('bash', '.ci/docker', 'setup')
    try:
        secs = build(cached)
        size = int(sh(DOCKER, 'image', 'inspect', '--format', '{{.Size}}', TAG)) / 1e9
        run = tiny_run(epochs)
    finally: sh('bash', '.ci/docker', 'stop')
    m = run['card']['metrics']
    row = dict(image_gb=round(size, 2), build_s=round(secs), cached=cached, epochs=epochs, run_s=run['run_s'],
               test_accuracy=m.get('test_accuracy'), train_time_s=m.get('train_time_s'), torch=run['card']['libraries'].get('torch'))
    print('| image GB | build s | epochs | papermill run s (docker run to exit) | train s | test accuracy | torch |')
    print('|---:|---:|---:|---:|---:|---:|---|')
    print(f"| {row['image_gb']} | {row['build_s']}{' (cached)' if cached else ''} | {epochs} | {row['run_s']} | {row['train_time_s']} | {row['test_accuracy']:.3f} | {row['torch']} |")
    out.write_text(json.dumps(dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'),
                                   machine=platform.processor() or platform.machine(), **row, card=run['card']), indent=1))

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--epochs', type=int, default=1)
    p.add_argument('--cached', action='store_true', help='reuse the layers of an earlier build')
    p.add_argument('--out', type=Path, default=root/'bench'/'train_image.json')
    a = p.parse_args()
    main(a.epochs, a.cached, a.out)
