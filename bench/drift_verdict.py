"""The drift verdict's false-alarm rate and detection power, on held-out images only.

`python bench/drift_verdict.py [--bundle runs/<run>/bundle] [--windows 120]`: draws in-distribution windows from the
digits test split (which neither trained the bundle nor is its reference set), and windows of the same images under
the shifts the monitoring chapter replays; runs `drift_report` on each and counts verdicts. The verdict as shipped
(feature groups, Bonferroni within a group, two of five groups) is compared, on the very same reports, with the rule
it replaced (ten features each at its own threshold, drift from three). Prints a table, writes bench/drift_verdict.json.
"""
import argparse, json, os, platform, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
import numpy as np
from PIL import Image, ImageFilter, ImageOps
from opsbook.bundle import load_bundle
from opsbook.data import digits_folder, scan_folder
from opsbook.features import load_image
from opsbook.monitor import drift_report, image_features
from opsbook.train import train_bundle

ap = argparse.ArgumentParser()
ap.add_argument('--bundle', help='a digits bundle; default: one trained here for a few seconds')
ap.add_argument('--windows', type=int, default=120, help='in-distribution windows')
ap.add_argument('--shift-windows', type=int, default=20, help='windows per shift and size')
a = ap.parse_args()

rng = np.random.default_rng(0)
shifts = {'inverted': lambda im: ImageOps.invert(im.convert('L')),
          'rotated 25°': lambda im: im.rotate(25, resample=Image.BILINEAR),
          'blurred': lambda im: im.resize((32, 32)).filter(ImageFilter.GaussianBlur(2)).resize((8, 8)),
          'noisy': lambda im: Image.fromarray(np.clip(np.asarray(im, np.float32) + rng.normal(0, 40, (8, 8)), 0, 255).astype(np.uint8)),
          'rescaled 16px': lambda im: im.resize((16, 16), Image.BILINEAR)}

def old_rule(v) -> bool:
    "The verdict before feature groups: each of ten features at its own threshold, drift from a share of 0.3."
    drifted = [k for k, s in v.scores.items() if (s < 0.05 if 'p_value' in v.methods[k] else s >= 0.1)]
    return len(drifted) / len(v.scores) >= 0.3

with tempfile.TemporaryDirectory() as d:
    b = load_bundle(a.bundle or train_bundle(Path(d)/'bundle', name='digits-bench'))
    held_out = [load_image(p) for p in scan_folder(digits_folder()).split('test').path]
    def window(n, f=lambda im: im): return image_features(b, [f(held_out[i]) for i in rng.choice(len(held_out), n, replace=False)])
    t0 = time.perf_counter()
    rows = {}
    for n in (50, 100, 200):
        vs = [drift_report(b, window(n)) for _ in range(a.windows if n == 100 else a.shift_windows)]
        rows[('none', n)] = vs
    for k, f in shifts.items():
        for n in (50, 200): rows[(k, n)] = [drift_report(b, window(n, f)) for _ in range(a.shift_windows)]
    secs = time.perf_counter() - t0

table = [dict(shift=k, window=n, runs=len(vs), drift_rate=float(np.mean([v.drift for v in vs])),
              old_rule_rate=float(np.mean([old_rule(v) for v in vs])),
              groups_seen=sorted({g for v in vs for g in v.drifted})) for (k, n), vs in rows.items()]
print(f"{'shift':<14}{'window':>7}{'runs':>6}{'verdict':>10}{'old rule':>10}  groups that drifted")
for r in table:
    print(f"{r['shift']:<14}{r['window']:>7}{r['runs']:>6}{r['drift_rate']:>10.1%}{r['old_rule_rate']:>10.1%}  {', '.join(r['groups_seen'])}")
print(f"{len([v for vs in rows.values() for v in vs])} reports in {secs:.0f} s")
meta = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f"{platform.machine()}, {os.cpu_count()} cores",
            bundle=str(b.card.name), seconds=round(secs, 1))
Path(__file__).with_name('drift_verdict.json').write_text(json.dumps(dict(**meta, table=table), indent=2))
