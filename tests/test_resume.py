"A training run killed mid-epoch resumes from its checkpoint and ends exactly where an uninterrupted run does."
import json, os, signal, subprocess, sys, time
import pandas as pd, pytest, torch
from conftest import papermill, ROOT
from opsbook.bundle import load_bundle
from opsbook.data import digits_folder, fingerprint
from opsbook.train import TrainConfig

def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    params = dict(epochs=8, size=16, run_name='resumable', out_dir=tmp_path/'run', wandb_mode='disabled', gate_margin=-1.0)
    args = [a for k, v in params.items() for a in ('-p', k, str(v))]
    p = subprocess.Popen([sys.executable, '-m', 'papermill', 'nbs/train.ipynb', str(tmp_path/'first.ipynb'), *args],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state, deadline = tmp_path/'run'/'checkpoint'/'state.json', time.time() + 240
    try:
        while time.time() < deadline and p.poll() is None:
            if state.exists() and json.loads(state.read_text())['epoch'] >= 2: break
            time.sleep(0.2)
        assert p.poll() is None, 'the run ended before it could be interrupted'
        os.killpg(p.pid, signal.SIGKILL)
    finally:
        if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    done = json.loads(state.read_text())['epoch']
    assert 2 <= done < 7 and not (tmp_path/'run'/'bundle').exists()

    r = papermill(tmp_path/'second.ipynb', **params)
    assert r.returncode == 0, r.stderr[-3000:]
    report = (tmp_path/'second.ipynb').read_text()
    assert f'at epoch {done + 1} of 8' in report
    assert f'epoch {done} ' not in report and 'epoch 7 ' in report
    b = load_bundle(tmp_path/'run'/'bundle')
    assert b.card.params['resumed_from_epoch'] == done + 1
    assert b.card.metrics['valid_accuracy'] > 0.9
    assert not (tmp_path/'run'/'checkpoint').exists()

    r = papermill(tmp_path/'whole.ipynb', **{**params, 'run_name': 'whole', 'out_dir': tmp_path/'whole'})
    assert r.returncode == 0, r.stderr[-3000:]
    whole = load_bundle(tmp_path/'whole'/'bundle').card.metrics
    for k in ('valid_loss', 'valid_accuracy', 'test_loss', 'test_accuracy'):
        assert abs(b.card.metrics[k] - whole[k]) < 1e-6, (k, b.card.metrics[k], whole[k])   # the same run, killed or not
    hist = pd.read_csv(tmp_path/'run'/'history.csv')   # what the DVC loss plot reads: the whole run's, epoch for epoch
    assert list(hist.epoch) == list(range(1, 9)) and not hist.isna().any().any(), hist
    pd.testing.assert_frame_equal(hist, pd.read_csv(tmp_path/'whole'/'history.csv'), rtol=0, atol=1e-6)

def test_resume_with_other_parameters_is_refused(tmp_path):
    params = dict(epochs=2, size=16, run_name='r', out_dir=tmp_path/'run', wandb_mode='disabled')
    state = tmp_path/'run'/'checkpoint'
    state.mkdir(parents=True)
    written = {**TrainConfig.check(epochs=2, size=16).training_params(), 'lr': 0.5}
    (state/'state.json').write_text(json.dumps(dict(epoch=0, n_epoch=2, file='epoch-0.pth', params=written)))
    r = papermill(tmp_path/'report.ipynb', **params)
    assert r.returncode != 0 and 'was written with lr=0.5 (now 0.01)' in r.stderr

class Payload:
    def __reduce__(self): return (print, ('this ran while the checkpoint was read',))

@pytest.mark.parametrize('case', ['other data', 'pickled object'])
def test_resume_on_other_data_or_from_a_pickle_is_refused(tmp_path, case):
    params = dict(epochs=2, size=16, run_name='r', out_dir=tmp_path/'run', wandb_mode='disabled')
    ckpt = tmp_path/'run'/'checkpoint'
    ckpt.mkdir(parents=True)
    data = 'f' * 64 if case == 'other data' else fingerprint(digits_folder())
    written = {**TrainConfig.check(epochs=2, size=16).training_params(), 'world_size': 1, 'data': data}
    (ckpt/'state.json').write_text(json.dumps(dict(epoch=0, n_epoch=2, file='epoch-0.pth', params=written)))
    torch.save(dict(model={}, payload=Payload()), ckpt/'epoch-0.pth')
    r = papermill(tmp_path/'report.ipynb', **params)
    said = 'was written with other data' if case == 'other data' else 'holds more than tensors and plain values'
    assert r.returncode != 0 and said in r.stderr, r.stderr[-3000:]
    assert 'this ran while the checkpoint was read' not in r.stdout + r.stderr
