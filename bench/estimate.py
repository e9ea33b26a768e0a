"""How far the label-free accuracy estimate is from the accuracy the labels give, on held-out images only.

`python bench/estimate.py [--bundle runs/<run>/bundle] [--windows 20] [--n 500]`: draws windows of `--n` predictions
from the digits test split (which neither trained the bundle nor is its reference set), unchanged and under shifts of
growing strength, and compares, per window, the accuracy measured with the labels with two label-free estimates:
ATC (the monitor chapter's `estimate_accuracy`, its threshold fitted on the bundle's reference set) and the mean
confidence. Prints a table, writes bench/estimate.json. Target (closed-loop issue): error at most 3 points with at
least 500 predictions.
"""
import argparse, json, os, platform, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
import numpy as np
from PIL import Image, ImageFilter, ImageOps
from opsbook.bundle import load_bundle
from opsbook.data import digits_folder, scan_folder
from opsbook.features import load_image
from opsbook.monitor import bundle_threshold, estimate_accuracy
from opsbook.train import train_bundle

ap = argparse.ArgumentParser()
ap.add_argument('--bundle', help='a digits bundle; default: one trained here for a few seconds')
ap.add_argument('--windows', type=int, default=20, help='windows per shift')
ap.add_argument('--n', type=int, default=500, help='predictions per window')
a = ap.parse_args()

rng = np.random.default_rng(0)
def rotate(deg): return lambda im: im.rotate(rng.uniform(-deg, deg), resample=Image.BILINEAR)
def noise(sd): return lambda im: Image.fromarray(np.clip(np.asarray(im, np.float32) + rng.normal(0, sd, im.size[::-1]), 0, 255).astype(np.uint8))
shifts = {'none': lambda im: im, 'rotated ±10°': rotate(10), 'rotated ±20°': rotate(20), 'rotated ±30°': rotate(30),
          'noisy σ=20': noise(20), 'noisy σ=40': noise(40), 'rescaled 16px': lambda im: im.resize((16, 16), Image.BILINEAR),
          'blurred': lambda im: im.resize((32, 32)).filter(ImageFilter.GaussianBlur(2)).resize((8, 8)),
          'inverted': lambda im: ImageOps.invert(im.convert('L'))}

with tempfile.TemporaryDirectory() as d:
    b = load_bundle(a.bundle or train_bundle(Path(d)/'bundle', name='digits-bench'))
    test = scan_folder(digits_folder()).split('test')
    held_out, labels = [load_image(p) for p in test.path], np.array(test.label)
    thr, t0, rows = bundle_threshold(b), time.perf_counter(), []
    for k, f in shifts.items():
        errs = dict(accuracy=[], atc=[], confidence=[])
        for _ in range(a.windows):
            idx = rng.choice(len(held_out), a.n)
            probs, _ = b.predict([f(held_out[i]) for i in idx])
            acc = float((np.array(b.classes)[probs.argmax(1)] == labels[idx]).mean())
            errs['accuracy'].append(acc)
            errs['atc'].append(estimate_accuracy(probs.max(1), thr) - acc)
            errs['confidence'].append(float(probs.max(1).mean()) - acc)
        rows.append(dict(shift=k, windows=a.windows, n=a.n, accuracy=float(np.mean(errs['accuracy'])),
                         atc_mean_abs_error=float(np.mean(np.abs(errs['atc']))), atc_max_abs_error=float(np.max(np.abs(errs['atc']))),
                         atc_bias=float(np.mean(errs['atc'])), confidence_mean_abs_error=float(np.mean(np.abs(errs['confidence'])))))
    secs = time.perf_counter() - t0

print(f"{'shift':<15}{'accuracy':>9}{'ATC |err|':>11}{'ATC max':>9}{'ATC bias':>10}{'mean conf |err|':>17}")
for r in rows:
    print(f"{r['shift']:<15}{r['accuracy']:>9.3f}{r['atc_mean_abs_error']:>11.3f}{r['atc_max_abs_error']:>9.3f}"
          f"{r['atc_bias']:>+10.3f}{r['confidence_mean_abs_error']:>17.3f}")
within = [r['shift'] for r in rows if r['atc_max_abs_error'] <= 0.03]
print(f"ATC within 3 points in every window: {', '.join(within) or 'none'} ({secs:.0f} s)")
meta = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f"{platform.machine()}, {os.cpu_count()} cores",
            bundle=b.card.name, threshold=thr, seconds=round(secs, 1))
Path(__file__).with_name('estimate.json').write_text(json.dumps(dict(**meta, target_abs_error=0.03, within_target=within,
                                                                      table=rows), indent=2))
