"The papermill training run end to end: parameters, bundle, ONNX-vs-torch agreement, bad parameters."
import json, shutil, subprocess
import numpy as np, pandas as pd, pytest, torch
from conftest import papermill, ROOT
from opsbook.bundle import EXIT, load_bundle
from opsbook.features import load_image, preprocess
from opsbook.train import bundle_model
from opsbook.data import digits_folder, scan_folder

def outputs(nb_path) -> str:
    nb = json.loads(nb_path.read_text())
    return '\n'.join(''.join(o.get('text', '')) + ''.join(o.get('data', {}).get('text/plain', ''))
                     for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', []))

def test_run_from_nbs_writes_a_bundle_that_onnx_and_torch_agree_on(tmp_path):
    r = papermill(tmp_path/'report.ipynb', cwd=ROOT/'nbs', nb='train.ipynb', lr=1e-3, epochs=3, size=16,
                  out_dir=tmp_path/'run', run_name='e2e', wandb_mode='offline', gate_margin=-1.0)
    assert r.returncode == 0, r.stderr[-3000:]
    b = load_bundle(tmp_path/'run'/'bundle')
    assert b.card.params['lr'] == 1e-3 and b.card.params['epochs'] == 3 and b.card.input.size == 16
    assert b.card.data['fingerprint'] and 'commit' in b.card.git
    test = scan_folder(digits_folder()).split('test')
    imgs = [load_image(p) for p in test.path]
    probs, emb = b.predict(imgs)
    with torch.no_grad(): ref = bundle_model(b)(torch.from_numpy(preprocess(imgs, b.spec))).softmax(1).numpy()
    assert (probs.argmax(1) == ref.argmax(1)).all()
    assert np.abs(probs - ref).max() < 1e-4
    acc = (np.array(b.classes)[probs.argmax(1)] == test.label.values).mean()
    assert acc == pytest.approx(b.card.metrics['test_accuracy'], abs=0.005)
    assert acc > 0.8
    assert not (tmp_path/'run'/'checkpoint').exists()
    assert list((tmp_path/'run'/'wandb').glob('offline-run-*'))
    assert 'test accuracy: torch' in outputs(tmp_path/'report.ipynb')
    assert b.card.evaluation['test']['accuracy'] == pytest.approx(acc)
    assert (tmp_path/'run'/'bundle'/'evaluation'/'test'/'confusion.png').exists()
    assert b.card.approved and b.card.evaluation['gate']['accuracy'] == pytest.approx(acc)
    assert list(pd.read_csv(tmp_path/'run'/'history.csv').epoch) == [1, 2, 3]

    r = subprocess.run(['opsbook-evaluate', '--bundle', str(tmp_path/'run'/'bundle'), '--split', 'valid'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert load_bundle(tmp_path/'run'/'bundle').card.evaluation['valid']['n'] == 270
    odd = tmp_path/'odd'
    for c in ('0', 'cat'): shutil.copytree(digits_folder()/'test'/'0', odd/c)
    r = subprocess.run(['opsbook-evaluate', '--bundle', str(tmp_path/'run'/'bundle'), '--data', str(odd), '--split', 'test'], capture_output=True, text=True)
    assert r.returncode == EXIT['bad_input'] and "classes the model does not know: ['cat']" in r.stderr

@pytest.mark.parametrize('param,value,message', [
    ('arch', 'vgg16', 'unknown arch'),
    ('lr', -1, 'lr: Input should be greater than 0'),
    ('data_dir', '/no/such/folder', 'is not a folder'),
    ('lrr', 0.1, 'unknown: lrr; the known parameters are data_dir, arch, epochs, lr'),   # a typo is not the default
])
def test_bad_parameters_fail_in_the_first_cells(tmp_path, param, value, message):
    r = papermill(tmp_path/'report.ipynb', out_dir=tmp_path/'run', **{param: value})
    assert r.returncode != 0
    assert message in r.stderr
    nb = json.loads((tmp_path/'report.ipynb').read_text())
    code = [c for c in nb['cells'] if c['cell_type'] == 'code']
    failed = next(i for i, c in enumerate(code) if any(o['output_type'] == 'error' for o in c['outputs']))
    assert 'TrainConfig.check' in ''.join(code[failed]['source'])
    assert failed <= 3 and not (tmp_path/'run'/'bundle').exists()

def test_a_run_that_learnt_nothing_is_rejected_loudly_and_not_served(tmp_path):
    params = dict(epochs=1, lr=1e-6, size=16, out_dir=tmp_path/'run', wandb_mode='disabled')
    args = [a for k, v in params.items() for a in ('-p', k, str(v))]
    r = subprocess.run(['opsbook-train', str(tmp_path/'report.ipynb'), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == EXIT['rejected'] and 'NOT APPROVED' in r.stderr, r.stderr[-3000:]
    assert 'quality gate: NOT APPROVED' in outputs(tmp_path/'report.ipynb')
    card = load_bundle(tmp_path/'run'/'bundle').card
    assert card.approved is False and card.evaluation['gate']['best'] == 'logistic'
    r = subprocess.run(['opsbook-serve', '--bundle', str(tmp_path/'run'/'bundle')], capture_output=True, text=True, timeout=60)
    assert r.returncode == EXIT['bad_input'] and 'not approved by its quality gate' in r.stderr, r.stderr[-2000:]
