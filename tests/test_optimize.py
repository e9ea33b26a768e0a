"""Every optimised variant is a bundle that loads, verifies, predicts the test split at its recorded accuracy, and is
judged by a quality gate of its own: a variant of an approved bundle against the same baselines and within a point of
its parent, served when approved; a variant of a rejected one rejected, `opsbook-optimize` exiting 5 and
`opsbook-serve` refusing it."""
import shutil, subprocess
import numpy as np, pytest
from fastapi.testclient import TestClient
from opsbook.bundle import EXIT, amend_card, load_bundle
from opsbook.data import digits_folder, scan_folder
from opsbook.optimize import optimize, METHODS
from opsbook.serve import create_app

@pytest.mark.parametrize('method', METHODS)
def test_variant_loads_predicts_is_judged_and_serves(small_bundle, tmp_path, method):
    scan, parent = scan_folder(digits_folder()), load_bundle(small_bundle)
    v = optimize(small_bundle, method, out=tmp_path/method, data_dir=scan, epochs=2)
    b = load_bundle(v.path)
    assert b.card.parent['method'] == method and b.card.parent['model_sha256'] == parent.card.files['model.onnx']
    test = scan.split('test')
    probs, _ = b.predict(list(test.path))
    acc = (np.array(b.classes)[probs.argmax(1)] == test.label.values).mean()
    assert acc == pytest.approx(b.card.evaluation['test']['accuracy'])
    g = b.card.evaluation['gate']                   # its own verdict, and its parent's
    assert g['accuracy'] == pytest.approx(acc) and g['parent_accuracy'] == pytest.approx(parent.card.evaluation['gate']['accuracy'])
    assert g['baselines'] == parent.card.evaluation['gate']['baselines'] and g['tolerance'] == 0.01
    assert g['parent']['approved'] is True and g['parent']['name'] == 'digits-test' and g['parent']['reason'] == parent.card.evaluation['gate']['reason']
    assert b.card.approved == (acc >= g['parent_accuracy'] - 0.01 and acc >= max(g['baselines'].values()))
    if method != 'prune': assert b.card.approved, g['reason']     # int8 and the rewritten graph keep the digits' accuracy
    if not b.card.approved:                         # pruning with 2 epochs of fine-tuning may lose more than a point
        with pytest.raises(ValueError, match='not approved by its quality gate'):
            with TestClient(create_app(bundle=str(b.path), log_db=str(tmp_path/'log.db'))): pass
        return
    with TestClient(create_app(bundle=str(b.path), log_db=str(tmp_path/'log.db'))) as client:
        r = client.post('/predict', files={'file': ('d.png', open(test.path.iloc[0], 'rb'), 'image/png')})
        assert r.status_code == 200 and r.json()['model'] == b.card.name

def rejected(small_bundle, dst):
    "A copy of `small_bundle` whose quality gate said no."
    shutil.copytree(small_bundle, dst)
    gate = {**load_bundle(dst).card.evaluation['gate'], 'approved': False, 'reason': 'accuracy 0.1000 < majority baseline 0.1037'}
    amend_card(dst, approved=False, evaluation={'gate': gate})
    return dst

@pytest.mark.parametrize('method', ['ort', 'quantize'])
def test_a_variant_of_a_rejected_bundle_is_rejected_and_not_served(small_bundle, tmp_path, method):
    parent = rejected(small_bundle, tmp_path/'parent')
    r = subprocess.run(['opsbook-optimize', '--bundle', str(parent), '--method', method, '--out', str(tmp_path/'v')],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == EXIT['rejected'], r.stderr[-2000:]
    assert 'is not approved by its quality gate: its parent digits-test' in r.stderr and 'accuracy 0.1000 < majority' in r.stderr
    card = load_bundle(tmp_path/'v').card                   # written, to be looked at, and marked
    assert card.approved is False and card.evaluation['gate']['parent']['approved'] is False
    r = subprocess.run(['opsbook-serve', '--bundle', str(tmp_path/'v')], capture_output=True, text=True, timeout=60)
    assert r.returncode == EXIT['bad_input'] and 'not approved by its quality gate (its parent digits-test' in r.stderr, r.stderr[-2000:]

def test_a_variant_that_falls_below_its_parent_is_rejected(small_bundle, tmp_path):
    "--tolerance -0.01 asks for a point better than the parent: the rewritten graph, as accurate as its parent, is rejected."
    r = subprocess.run(['opsbook-optimize', '--bundle', str(small_bundle), '--method', 'ort', '--out', str(tmp_path/'v'),
                        '--tolerance', '-0.01', '--metrics', str(tmp_path/'m.json')], capture_output=True, text=True, timeout=300)
    assert r.returncode == EXIT['rejected'] and "< parent's" in r.stderr, r.stderr[-2000:]
    g = load_bundle(tmp_path/'v').card.evaluation['gate']
    assert g['approved'] is False and g['tolerance'] == -0.01 and g['parent']['approved'] is True
    assert '"approved": false' in (tmp_path/'m.json').read_text()
