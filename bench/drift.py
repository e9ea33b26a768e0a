"""Drift check over 10,000 logged predictions: read the SQLite log, project the embeddings, run Evidently.

`python bench/drift.py --bundle runs/<run>/bundle`; prints the timings and writes bench/drift.json.
"""
import argparse, json, os, platform, sqlite3, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
from fastapi.testclient import TestClient
from opsbook.bundle import load_bundle
from opsbook.data import digits_folder, scan_folder
from opsbook.monitor import drift_report, read_log
from opsbook.serve import create_app

ap = argparse.ArgumentParser()
ap.add_argument('--bundle', required=True)
ap.add_argument('--rows', type=int, default=10_000)
a = ap.parse_args()
b = load_bundle(a.bundle)
paths = list(scan_folder(digits_folder()).split('test').path)
with tempfile.TemporaryDirectory() as d:
    db = Path(d)/'log.db'
    with TestClient(create_app(bundle=a.bundle, log_db=str(db))) as client:
        for i in range(270): client.post('/predict', files={'file': ('d.png', open(paths[i], 'rb').read())})
    with sqlite3.connect(db) as con:                 # grow the log to --rows by repeating the real rows
        cols = [r[1] for r in con.execute('pragma table_info(predictions)') if r[1] != 'id']
        while con.execute('select count(*) from predictions').fetchone()[0] < a.rows:
            con.execute(f"insert into predictions ({', '.join(cols)}) select {', '.join(cols)} from predictions limit ?",
                        (a.rows - con.execute('select count(*) from predictions').fetchone()[0],))
    t0 = time.perf_counter(); cur = read_log(db, b, window=a.rows); t1 = time.perf_counter()
    v = drift_report(b, cur); t2 = time.perf_counter()
    v2 = drift_report(b, cur, out=Path(d)/'drift'); t3 = time.perf_counter()
rows = dict(rows=len(cur), read_log_s=t1 - t0, report_s=t2 - t1, report_with_html_json_s=t3 - t2, total_s=t2 - t0, drift=v.drift)
print(json.dumps(rows, indent=2))
meta = dict(date=datetime.now(timezone.utc).isoformat(timespec='seconds'), machine=f"{platform.machine()}, {os.cpu_count()} cores")
Path(__file__).with_name('drift.json').write_text(json.dumps(dict(**meta, **rows), indent=2))
