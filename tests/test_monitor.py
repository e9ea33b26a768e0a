"Drift detection: no false alarms in-distribution, power on shifted traffic, and the opsbook-drift command."
import io, json, subprocess, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
import numpy as np, pandas as pd, pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps
from opsbook.bundle import EXIT, load_bundle
from opsbook.features import load_image
from opsbook.data import digits_folder, scan_folder
from opsbook.monitor import drift_report, image_features
from opsbook.serve import create_app

@pytest.fixture(scope='module')
def unseen():
    "Held-out images: the test split, which neither trained the model nor is its reference set (the validation split)."
    return [load_image(p) for p in scan_folder(digits_folder()).split('test').path]

def window(bundle, imgs, n, seed, shift=lambda im: im):
    idx = np.random.default_rng(seed).choice(len(imgs), n, replace=False)
    return image_features(bundle, [shift(imgs[i]) for i in idx])

def test_no_false_alarm_in_20_in_distribution_windows(small_bundle, unseen):
    b = load_bundle(small_bundle)
    alarms = [drift_report(b, window(b, unseen, 100, seed)).drift for seed in range(20)]
    assert sum(alarms) <= 1, alarms

@pytest.mark.parametrize('shift,n', [(lambda im: ImageOps.invert(im.convert('L')), 50),
                                     (lambda im: im.rotate(25, resample=Image.BILINEAR), 200)], ids=['inverted-50', 'rotated25-200'])
def test_shifted_traffic_is_flagged(small_bundle, unseen, shift, n):
    b = load_bundle(small_bundle)
    assert drift_report(b, window(b, unseen, n, 0, shift)).drift

class Hook(BaseHTTPRequestHandler):
    got = []
    def do_POST(self):
        Hook.got.append(json.loads(self.rfile.read(int(self.headers['Content-Length']))))
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass

def test_drift_command_exit_status_report_and_webhook(small_bundle, unseen, tmp_path):
    db = tmp_path/'log.db'
    unseen = [unseen[i] for i in np.random.default_rng(0).permutation(len(unseen))]   # files are listed class by class
    def png(im): b = io.BytesIO(); im.save(b, 'PNG'); return b.getvalue()
    with TestClient(create_app(bundle=str(small_bundle), log_db=str(db))) as client:
        for im in unseen[:10]: client.post('/predict', files={'file': ('d.png', png(im))})
        cmd = ['opsbook-drift', '--bundle', str(small_bundle), '--log', str(db), '--window', '200']
        assert subprocess.run(cmd, capture_output=True).returncode == EXIT['too_few']   # 10 rows: too few to judge
        for im in unseen[10:110]: client.post('/predict', files={'file': ('d.png', png(im))})
    assert subprocess.run(cmd, capture_output=True).returncode == EXIT['ok']
    with TestClient(create_app(bundle=str(small_bundle), log_db=str(db))) as client:
        for im in unseen[110:210]: client.post('/predict', files={'file': ('d.png', png(ImageOps.invert(im)))})
    srv = HTTPServer(('127.0.0.1', 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        r = subprocess.run(cmd[:-1] + ['100', '--out', str(tmp_path/'drift'), '--webhook', f'http://127.0.0.1:{srv.server_port}/alert'], capture_output=True, text=True)
    finally: srv.shutdown()
    assert r.returncode == EXIT['drift'], r.stderr[-2000:]
    assert json.loads(r.stdout)['drift'] and Hook.got[-1]['drift'] and Hook.got[-1]['window'] == 100
    assert (tmp_path/'drift.html').exists() and (tmp_path/'drift.json').exists()
    r = subprocess.run(['opsbook-drift', '--bundle', str(small_bundle), '--log', str(tmp_path/'none.db')], capture_output=True, text=True)
    assert r.returncode == EXIT['bad_input'] and 'does not exist' in r.stderr
