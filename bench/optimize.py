"""Variants side by side: accuracy, size, parameters, batch-1 latency and batch-64 throughput on ONNX Runtime
(2 intra-op threads), for a trained digits bundle and an untrained ResNet-18 at 224 px; plus eager vs
torch.compile on the torch path.

`python bench/optimize.py --bundle runs/<run>/bundle`; prints the tables, writes bench/optimize.json.
"""
import argparse, json, os, platform, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
import numpy as np, torch
from PIL import Image
from opsbook.bundle import load_bundle, onnx_session, write_bundle
from opsbook.features import preprocess
from opsbook.train import bundle_model
from opsbook.data import digits_folder, scan_folder
from opsbook.evaluate import evaluate
from opsbook.learner import LogitsAndEmbedding, create_model
from opsbook.optimize import optimize, METHODS

def timings(run, x1, x64, n1=300, n64=20) -> dict:
    "Median and p99 batch-1 latency (ms), batch-64 throughput (images/s) of `run`."
    for _ in range(10): run(x1)
    lat = []
    for _ in range(n1):
        t = time.perf_counter(); run(x1); lat.append((time.perf_counter() - t) * 1000)
    run(x64)
    t = time.perf_counter()
    for _ in range(n64): run(x64)
    return dict(p50_ms=float(np.median(lat)), p99_ms=float(np.percentile(lat, 99)), img_per_s=64 * n64 / (time.perf_counter() - t))

def onnx_row(b, x1, x64, trained) -> dict:
    sess = onnx_session(b.path/'model.onnx', threads=2)
    run = lambda x: sess.run(['logits'], {'image': x})
    ev = b.card.evaluation.get('test', {})
    return dict(test_accuracy=ev.get('accuracy') if trained else None, onnx_kb=(b.path/'model.onnx').stat().st_size / 1024,
                params=int(sum(v.size for k, v in b.weights().items() if 'running' not in k and 'num_batches' not in k)), **timings(run, x1, x64))

def torch_rows(b, x1, x64) -> dict:
    torch.set_num_threads(2)
    m = bundle_model(b)
    rows = {}
    with torch.no_grad():
        rows['torch eager'] = timings(lambda x: m(torch.from_numpy(x)), x1, x64, n1=100, n64=10)
        c = torch.compile(m)
        t = time.perf_counter(); c(torch.from_numpy(x1)); c(torch.from_numpy(x64)); compile_s = time.perf_counter() - t
        rows['torch.compile'] = {**timings(lambda x: c(torch.from_numpy(x)), x1, x64, n1=100, n64=10), 'compile_s': compile_s}
    return rows

def variants(parent, scan, work, trained, **kw) -> dict:
    bs = {'fp32': parent, **{m: optimize(parent, m, out=work/f'{parent.card.name}-{m}', data_dir=scan, **kw) for m in METHODS}}
    return {k: load_bundle(b.path) for k, b in bs.items()}

def table(name, rows, base='fp32'):
    print(f"\n{name}")
    print(f"{'variant':16} {'test acc':>8} {'onnx KiB':>9} {'params':>9} {'b1 p50 ms':>9} {'b1 p99 ms':>9} {'b64 img/s':>10} {'vs ' + base:>7}")
    for k, r in rows.items():
        acc = f"{r['test_accuracy']*100:.2f}%" if r.get('test_accuracy') is not None else 'n/a'
        kb, params = (f"{r['onnx_kb']:.0f}", f"{r['params']:,}") if 'onnx_kb' in r else ('', '')
        print(f"{k:16} {acc:>8} {kb:>9} {params:>9} {r['p50_ms']:9.2f} {r['p99_ms']:9.2f} {r['img_per_s']:10.0f} {r['img_per_s'] / rows[base]['img_per_s']:6.2f}x")

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--bundle', required=True)
    a = ap.parse_args()
    scan = scan_folder(digits_folder())
    res = {}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        parent = load_bundle(a.bundle)
        if 'test' not in parent.card.evaluation: evaluate(parent, scan, 'test', write=False)
        test = [Image.open(p) for p in scan.split('test').path]
        x64 = preprocess((test * 2)[:64], parent.spec); x1 = x64[:1]
        vs = variants(parent, scan, work, True)
        if 'test' not in vs['fp32'].card.evaluation: vs['fp32'].card.evaluation['test'] = evaluate(parent, scan, 'test', write=False)
        res['digits'] = {k: onnx_row(b, x1, x64, True) for k, b in vs.items()}
        res['digits-torch'] = torch_rows(parent, x1, x64)

        card = dict(name='resnet18-224', architecture='resnet18', classes=[str(i) for i in range(10)],
                    input=dict(size=224, channels=3, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]), metrics={}, data={}, params={})
        r18 = load_bundle(write_bundle(LogitsAndEmbedding(create_model('resnet18', 10, n_in=3)), work/'resnet18', card, scan.split('valid').iloc[:64]))
        x64 = preprocess((test * 2)[:64], r18.spec); x1 = x64[:1]
        vs = variants(r18, scan, work, False, epochs=0, n_calib=64)
        res['resnet18-224'] = {k: onnx_row(b, x1, x64, False) for k, b in vs.items()}
        res['resnet18-224-torch'] = torch_rows(r18, x1, x64)
    table('digits bundle (ONNX Runtime, 2 threads)', res['digits'])
    table('digits, torch path (2 threads)', res['digits-torch'], base='torch eager')
    table('ResNet-18 224 px, untrained (ONNX Runtime, 2 threads)', res['resnet18-224'])
    table('ResNet-18 224 px, torch path (2 threads)', res['resnet18-224-torch'], base='torch eager')
    meta = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f"{platform.machine()}, {os.cpu_count()} cores")
    Path(__file__).with_name('optimize.json').write_text(json.dumps(dict(**meta, results=res), indent=2))
