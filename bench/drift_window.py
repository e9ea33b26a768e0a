"""How long one drift check takes by window size, to bound `/monitoring/drift?window=`: the verdict alone and with
Evidently's HTML report, on a request log grown by repeating real predictions of the digits test split.

`python bench/drift_window.py --bundle runs/<run>/bundle`; prints the timings and writes bench/drift_window.json.
"""
import argparse, json, os, platform, sqlite3, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
from fastapi.testclient import TestClient
from opsbook.bundle import load_bundle
from opsbook.data import digits_folder, scan_folder
from opsbook.monitor import drift_report, read_log
from opsbook.serve import DRIFT_WINDOW, create_app

ap = argparse.ArgumentParser()
ap.add_argument('--bundle', required=True)
ap.add_argument('--windows', type=int, nargs='+', default=[1_000, DRIFT_WINDOW, 100_000])
a = ap.parse_args()
b = load_bundle(a.bundle)
paths = list(scan_folder(digits_folder()).split('test').path)
rows = []
with tempfile.TemporaryDirectory() as d:
    db = Path(d)/'log.db'
    with TestClient(create_app(bundle=a.bundle, log_db=str(db))) as client:
        for p in paths[:250]: client.post('/predict', files={'file': ('d.png', open(p, 'rb').read())})
    drift_report(b, read_log(db, b, 250))                     # the first report pays Evidently's imports
    for n in sorted(a.windows):
        with sqlite3.connect(db) as con:                        # grow the log to n rows by repeating the real ones
            cols = ', '.join(r[1] for r in con.execute('pragma table_info(predictions)') if r[1] != 'id')
            while (have := con.execute('select count(*) from predictions').fetchone()[0]) < n:
                con.execute(f"insert into predictions ({cols}) select {cols} from predictions limit ?", (n - have,))
        t0 = time.perf_counter(); cur = read_log(db, b, window=n); t1 = time.perf_counter()
        drift_report(b, cur); t2 = time.perf_counter()
        drift_report(b, cur, out=Path(d)/'drift'); t3 = time.perf_counter()
        rows.append(dict(window=n, read_log_s=round(t1 - t0, 3), verdict_s=round(t2 - t1, 3), html_s=round(t3 - t2, 3),
                         html_mb=round((Path(d)/'drift.html').stat().st_size / 2**20, 1)))
        print(rows[-1], flush=True)
meta = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f"{platform.machine()}, {os.cpu_count()} cores",
            limit=DRIFT_WINDOW)
Path(__file__).with_name('drift_window.json').write_text(json.dumps(dict(**meta, rows=rows), indent=2))
