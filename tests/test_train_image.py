"The training image builds and trains: bench/train_image.py builds it and runs the papermill run once with one epoch (slow: minutes, gigabytes)."
import json, subprocess, sys
import pytest
from conftest import ROOT

@pytest.mark.slow
def test_train_image_builds_and_writes_a_bundle(tmp_path):
    r = subprocess.run([sys.executable, 'bench/train_image.py', '--cached', '--out', str(tmp_path/'train_image.json')],
                       cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((tmp_path/'train_image.json').read_text())
    assert res['card']['architecture'] == 'digitnet' and res['card']['params']['epochs'] == 1
    assert res['card']['libraries']['torch'] and res['test_accuracy'] > 0.3
