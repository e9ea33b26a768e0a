"""Default training run on the embedded digits, timed, beside scikit-learn's SVC on the same split.

Run from the repository root: `python bench/train_digits.py`. Prints a table and writes bench/train_digits.json.
"""
import json, os, platform, subprocess, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
import numpy as np
from PIL import Image
from sklearn.svm import SVC
from opsbook.data import digits_folder, scan_folder
from opsbook.bundle import load_bundle

root = Path(__file__).resolve().parent.parent

def pixels(items) -> np.ndarray:
    "Flattened pixels on the 0-16 scale of `load_digits`, for which gamma=0.001 is the scikit-learn example's choice."
    return np.stack([np.asarray(Image.open(p), np.float32).ravel() * 16 / 255 for p in items.path])

def svc_accuracy(scan, **kw) -> tuple[float, float]:
    "Test accuracy of an SVC fitted on train+valid, and its fit time."
    fit = scan.good[scan.good.split != 'test']
    test = scan.split('test')
    t = time.time()
    clf = SVC(**kw).fit(pixels(fit), fit.label)
    return float((clf.predict(pixels(test)) == test.label.values).mean()), time.time() - t

def papermill_run(out:Path) -> float:
    t = time.time()
    subprocess.run([sys.executable, '-m', 'papermill', 'nbs/train.ipynb', str(out/'report.ipynb'), '-p', 'out_dir', str(out),
                    '-p', 'run_name', 'bench', '--no-progress-bar'], cwd=root, check=True, capture_output=True)
    return time.time() - t

scan = scan_folder(digits_folder())
with tempfile.TemporaryDirectory() as d:
    wall = papermill_run(Path(d))
    card = load_bundle(Path(d)/'bundle').card
rows = [dict(model='opsbook digitnet (default papermill run)', test_accuracy=card.metrics['test_accuracy'],
             train_s=card.metrics['train_time_s'], total_s=round(wall, 1))]
for kw in (dict(gamma=0.001), dict()):
    acc, t = svc_accuracy(scan, **kw)
    rows.append(dict(model=f"sklearn SVC({', '.join(f'{k}={v}' for k, v in kw.items())})", test_accuracy=acc, train_s=round(t, 2), total_s=None))

print(f"{'model':45} {'test acc':>9} {'train s':>8} {'total s':>8}")
for r in rows: print(f"{r['model']:45} {r['test_accuracy']*100:8.2f}% {r['train_s']:8.1f} {r['total_s'] or '':>8}")
meta = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            python=platform.python_version(), libraries=card.libraries, n_test=len(scan.split('test')))
(root/'bench'/'train_digits.json').write_text(json.dumps(dict(**meta, rows=rows), indent=2))
