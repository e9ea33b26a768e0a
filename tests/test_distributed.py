"Data-parallel training on two CPU processes: the model of one process, from half the data each, in one bundle."
import shutil, subprocess
import pytest
from conftest import papermill, ROOT, RUN
from opsbook.bundle import load_bundle

def check_two_process_run(out, report, single):
    "What a two-process run must show next to a single-process run with the same parameters."
    two, one = load_bundle(out/'bundle').card, load_bundle(single).card
    assert (two.params['world_size'], one.params['world_size']) == (2, 1)
    assert abs(two.metrics['test_accuracy'] - one.metrics['test_accuracy']) <= 0.01, (two.metrics, one.metrics)
    assert two.params['train_steps'] == one.params['train_steps']   # the same steps: each process took half of every batch
    assert sorted(p.name for p in out.iterdir()) == ['bundle', 'history.csv', 'wandb']
    assert len(list((out/'wandb').glob('offline-run-*'))) == 1
    assert '2 processes of 32 images a batch' in report.read_text()

def test_nproc_2_trains_the_model_of_one_process(tmp_path, digits_run):
    r = papermill(tmp_path/'report.ipynb', **RUN, nproc=2, out_dir=tmp_path/'run', run_name='two')
    assert r.returncode == 0, r.stderr[-3000:]
    check_two_process_run(tmp_path/'run', tmp_path/'report.ipynb', digits_run)

@pytest.mark.skipif(not shutil.which('opsbook-train'), reason='opsbook-train is not installed: pip install -e .')
def test_torchrun_starts_the_same_run(tmp_path, digits_run):
    args = [a for k, v in {**RUN, 'out_dir': tmp_path/'run', 'run_name': 'torchrun'}.items() for a in ('-p', k, str(v))]
    r = subprocess.run(['torchrun', '--standalone', '--nproc-per-node', '2', '--no-python',
                        'opsbook-train', str(tmp_path/'report.ipynb'), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    check_two_process_run(tmp_path/'run', tmp_path/'report.ipynb', digits_run)
