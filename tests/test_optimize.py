"Every optimised variant is a bundle that loads, verifies, predicts the test split at its recorded accuracy, and serves."
import numpy as np, pytest
from fastapi.testclient import TestClient
from opsbook.bundle import load_bundle
from opsbook.data import digits_folder, scan_folder
from opsbook.optimize import optimize, METHODS
from opsbook.serve import create_app

@pytest.mark.parametrize('method', METHODS)
def test_variant_loads_predicts_and_serves(small_bundle, tmp_path, method):
    scan = scan_folder(digits_folder())
    v = optimize(small_bundle, method, out=tmp_path/method, data_dir=scan, epochs=2)
    b = load_bundle(v.path)
    assert b.card.parent['method'] == method and b.card.parent['model_sha256'] == load_bundle(small_bundle).card.files['model.onnx']
    test = scan.split('test')
    probs, _ = b.predict(list(test.path))
    acc = (np.array(b.classes)[probs.argmax(1)] == test.label.values).mean()
    assert acc == pytest.approx(b.card.evaluation['test']['accuracy'])
    with TestClient(create_app(bundle=str(b.path), log_db=str(tmp_path/'log.db'))) as client:
        r = client.post('/predict', files={'file': ('d.png', open(test.path.iloc[0], 'rb'), 'image/png')})
        assert r.status_code == 200 and r.json()['model'] == b.card.name
