import os, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

def papermill(out:Path, cwd:Path=ROOT, nb:str='nbs/train.ipynb', timeout:int=300, **params) -> subprocess.CompletedProcess:
    "Run the training notebook through papermill's command line, as a user would."
    args = [a for k, v in params.items() for a in ('-p', k, str(v))]
    env = {k: v for k, v in os.environ.items() if k != 'IN_TEST'}
    return subprocess.run([sys.executable, '-m', 'papermill', nb, str(out), *args, '--no-progress-bar'],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)

@pytest.fixture
def root() -> Path: return ROOT

@pytest.fixture(scope='session')
def small_bundle(tmp_path_factory) -> Path:
    "A digits bundle trained for a few seconds and approved by the quality gate."
    from opsbook.train import train_bundle
    from opsbook.evaluate import gate, check_approved
    b = train_bundle(tmp_path_factory.mktemp('bundle')/'bundle', name='digits-test')
    check_approved(gate(b), b)                          # opsbook-serve serves approved bundles only
    return b

@pytest.fixture(scope='session')
def test_items():
    "The digits test split: path and label of each image."
    from opsbook.data import digits_folder, scan_folder
    return scan_folder(digits_folder()).split('test')

RUN = dict(epochs=4, size=16, seed=0, wandb_mode='offline', gate_margin=-1.0)   # a short digits run, the one others are
# compared with; not judged by the quality gate (test_train.py tests the gate)

@pytest.fixture(scope='session')
def digits_run(tmp_path_factory) -> Path:
    "The bundle of a short single-process papermill run on the digits, with the parameters in `RUN`."
    out = tmp_path_factory.mktemp('digits-run')
    r = papermill(out/'report.ipynb', **RUN, out_dir=out/'run', run_name='one')
    assert r.returncode == 0, r.stderr[-3000:]
    return out/'run'/'bundle'

@pytest.fixture
def s3(tmp_path, monkeypatch):
    "The bucket of the page, `my-bucket`, on a moto server on 127.0.0.1, reached through the AWS variables."
    s3fs = pytest.importorskip('s3fs', reason="the cloud extra is not installed: pip install -e '.[cloud]'")
    import httpx
    from opsbook.learner import free_port
    port = free_port()
    server = subprocess.Popen([sys.executable, '-m', 'moto.server', '-H', '127.0.0.1', '-p', str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(AWS_ACCESS_KEY_ID='testing', AWS_SECRET_ACCESS_KEY='testing', AWS_DEFAULT_REGION='us-east-1',
               AWS_ENDPOINT_URL=f'http://127.0.0.1:{port}', OPSBOOK_CACHE=str(tmp_path/'cache'))
    for k, v in env.items(): monkeypatch.setenv(k, v)
    try:
        deadline = time.time() + 30
        while True:
            try:
                httpx.get(env['AWS_ENDPOINT_URL'], timeout=1)
                break
            except httpx.TransportError:
                if time.time() > deadline or server.poll() is not None: raise
                time.sleep(0.2)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir('my-bucket')
        yield fs
    finally:
        server.terminate()
        server.wait(timeout=10)
