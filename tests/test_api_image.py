"""The API image as users run it: ready with its bundle, answers, metrics behind its key, no torch, not root, a read-only
bundle, no start without a key, workers from its CPU quota, drift checks, graceful stop, a bundle mounted at run time,
and the compose deployment with its secret. Runs against $OPSBOOK_API_IMAGE, an image
built with the default bundle (`.ci/images` builds it and runs these tests)."""
import io, os, subprocess, time, uuid
import httpx, pytest
from PIL import Image, ImageOps
from conftest import ROOT
from test_serve import free_port

IMAGE = os.environ.get('OPSBOOK_API_IMAGE')
DOCKER = os.environ.get('DOCKER', 'docker')
pytestmark = pytest.mark.skipif(not IMAGE, reason='set OPSBOOK_API_IMAGE to an API image: .ci/images builds one and runs these tests')

def docker(*args, check=True, timeout=120) -> str:
    r = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check: assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()

def wait_ready(url:str, cid:str, timeout:float=60) -> float:
    "Seconds until `url`/readyz answers 200; fail with the container's log if it does not."
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if httpx.get(f'{url}/readyz', timeout=1).status_code == 200: return time.time() - t0
        except httpx.TransportError: pass
        assert docker('inspect', '--format', '{{.State.Running}}', cid) == 'true', docker('logs', cid, check=False)
        time.sleep(0.1)
    raise AssertionError(f'not ready in {timeout} s: {docker("logs", cid, check=False)[-3000:]}')

class Container:
    "`docker run -d IMAGE` with its port published on 127.0.0.1, ready when /readyz answers."
    def __init__(self, *args):
        self.port = free_port()
        self.id = docker('run', '-d', '-p', f'127.0.0.1:{self.port}:8000', *args, IMAGE)
        self.url = f'http://127.0.0.1:{self.port}'
        wait_ready(self.url, self.id)

    def exec(self, *cmd) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, 'exec', self.id, *cmd], capture_output=True, text=True, timeout=60)

    def stop(self) -> int:
        "docker stop (SIGTERM), then the exit status."
        docker('stop', '--time', '40', self.id, timeout=60)
        return int(docker('inspect', '--format', '{{.State.ExitCode}}', self.id))

    def remove(self): docker('rm', '-f', self.id, check=False)

def png(path, shift=lambda im: im) -> bytes:
    b = io.BytesIO(); shift(Image.open(path).convert('L')).save(b, 'PNG'); return b.getvalue()

@pytest.fixture(scope='module')
def volume():
    name = f'opsbook-test-{uuid.uuid4().hex[:8]}'
    docker('volume', 'create', name)
    yield name
    docker('volume', 'rm', '-f', name, check=False)

KEY = {'X-API-Key': 's3cret'}

@pytest.fixture(scope='module')
def key_file(tmp_path_factory) -> str:
    "The API key as a secret file, readable by the image's user; mount it with `secret(key_file)`."
    p = tmp_path_factory.mktemp('secret')/'api_key'
    p.write_text('s3cret\n'); p.chmod(0o444)
    return str(p)

def secret(path:str) -> list[str]: return ['-v', f'{path}:/run/secrets/api_key:ro', '-e', 'OPSBOOK_API_KEY_FILE=/run/secrets/api_key']

@pytest.fixture(scope='module')
def api(volume, key_file):
    c = Container('-v', f'{volume}:/var/lib/opsbook', *secret(key_file))
    yield c
    c.remove()

def test_serves_its_bundle(api, test_items):
    r = httpx.post(f'{api.url}/predict', files={'file': ('d.png', png(test_items.path.iloc[0]), 'image/png')})
    assert r.status_code == 200 and r.json()['label'] == str(test_items.label.iloc[0])
    assert httpx.get(f'{api.url}/model', headers=KEY).json()['name'] == 'digits-demo'
    assert 'opsbook_requests_total{endpoint="/predict",status="200"} 1.0' in httpx.get(f'{api.url}/metrics', headers=KEY).text
    for path in ['/model', '/metrics', '/monitoring/drift?format=html']: assert httpx.get(f'{api.url}{path}').status_code == 401

def test_runs_as_non_root_without_torch(api):
    assert api.exec('id', '-u').stdout.strip() == '10001'
    r = api.exec('python3', '-c', 'import torch')
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr
    r = api.exec('python3', '-c', 'import opsbook.serve, opsbook.monitor, sys; print("torch" in sys.modules)')
    assert r.stdout.strip() == 'False', r.stderr

def test_bundle_is_read_only_for_the_service(api):
    modes = api.exec('stat', '-c', '%U %a %n', '/bundle', '/bundle/model.onnx', '/bundle/bundle.json').stdout.splitlines()
    assert modes == ['root 555 /bundle', 'root 444 /bundle/model.onnx', 'root 444 /bundle/bundle.json'], modes
    for cmd in ['echo x >> /bundle/model.onnx', 'touch /bundle/new', 'rm /bundle/bundle.json']:
        r = api.exec('sh', '-c', cmd)
        assert r.returncode != 0 and 'ermission denied' in r.stderr, (cmd, r)

def test_refuses_to_start_without_a_key(tmp_path):
    r = subprocess.run([DOCKER, 'run', '--rm', IMAGE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'pass --no-auth (OPSBOOK_NO_AUTH=1)' in r.stderr and 'OPSBOOK_API_KEY_FILE' in r.stderr, r
    (tmp_path/'empty').write_text('\n'); (tmp_path/'empty').chmod(0o444)
    r = subprocess.run([DOCKER, 'run', '--rm', *secret(str(tmp_path/'empty')), IMAGE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'is empty' in r.stderr, r
    r = subprocess.run([DOCKER, 'run', '--rm', '-e', 'OPSBOOK_API_KEY= ', IMAGE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'the API key is empty' in r.stderr, r

def test_one_cpu_of_quota_runs_one_worker_with_one_thread():
    c = Container('--cpus', '1', '-e', 'OPSBOOK_NO_AUTH=1')                      # open on purpose: no key needed
    try:
        log = subprocess.run([DOCKER, 'logs', c.id], capture_output=True, text=True).stderr
        assert '1 worker with 1 ONNX Runtime thread each, for 1 available CPU' in log, log
        assert 'every endpoint is open' in log and httpx.get(f'{c.url}/model').status_code == 200
        count = "import glob; print(sum(open(p, 'rb').read().endswith(b'-fork\\0') for p in glob.glob('/proc/[0-9]*/cmdline')))"
        assert c.exec('python3', '-c', count).stdout.strip() == '0'             # one worker: uvicorn forks none
    finally: c.remove()

def test_one_worker_per_core_and_healthy(api):
    count = "import glob; print(sum(open(p, 'rb').read().endswith(b'-fork\\0') for p in glob.glob('/proc/[0-9]*/cmdline')))"   # uvicorn's workers
    assert api.exec('python3', '-c', count).stdout.strip() == api.exec('nproc').stdout.strip()
    deadline = time.time() + 60
    while docker('inspect', '--format', '{{.State.Health.Status}}', api.id) != 'healthy':
        assert time.time() < deadline, 'the HEALTHCHECK did not report healthy in 60 s'
        time.sleep(1)

def test_drift_check_on_shifted_traffic(api, test_items):
    for p in test_items.path[:60]:
        assert httpx.post(f'{api.url}/predict', files={'file': ('d.png', png(p, ImageOps.invert))}).status_code == 200
    verdict = httpx.get(f'{api.url}/monitoring/drift', params={'window': 60}, headers=KEY, timeout=120).json()
    assert verdict['drift'] is True, verdict
    assert 'opsbook_drift_detected 1.0' in httpx.get(f'{api.url}/metrics', headers=KEY).text

def test_stops_gracefully_and_keeps_its_log(api, volume):
    metrics = httpx.get(f'{api.url}/metrics', headers=KEY).text
    answered = next(float(l.split()[-1]) for l in metrics.splitlines() if l.startswith('opsbook_requests_total{endpoint="/predict",status="200"}'))
    assert api.stop() == 0
    logged = docker('run', '--rm', '-v', f'{volume}:/var/lib/opsbook', '--entrypoint', 'python3', IMAGE, '-c',
                    "import sqlite3; print(sqlite3.connect('/var/lib/opsbook/requests.db').execute('select count(*) from predictions').fetchone()[0])")
    assert int(logged) == answered > 0

def test_bundle_mounted_at_run_time(api, tmp_path, key_file):
    docker('cp', f'{api.id}:/bundle', str(tmp_path/'model'))
    for f in [tmp_path/'model', *(tmp_path/'model').iterdir()]: f.chmod(0o755 if f.is_dir() else 0o644)   # readable by the image's user
    c = Container('-v', f'{tmp_path/"model"}:/mnt/model:ro', '-e', 'OPSBOOK_BUNDLE=/mnt/model', *secret(key_file))
    try: assert httpx.get(f'{c.url}/model', headers=KEY).json()['name'] == 'digits-demo'
    finally: c.remove()

def test_compose_deploy_with_api_key_secret(tmp_path, test_items):
    (tmp_path/'key').write_text('s3cret\n')
    port, project = free_port(), f'opsbook-test-{uuid.uuid4().hex[:8]}'
    env = {**os.environ, 'OPSBOOK_IMAGE': IMAGE, 'OPSBOOK_PORT': str(port), 'OPSBOOK_API_KEY_FILE': str(tmp_path/'key'), 'COMPOSE_PROJECT_NAME': project}
    compose = ['docker-compose', '-f', str(ROOT/'docker'/'compose.yaml')]
    try:
        r = subprocess.run([str(ROOT/'docker'/'deploy'/'compose-deploy.sh'), 'api'], env=env, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        url = f'http://127.0.0.1:{port}'
        assert httpx.get(f'{url}/metrics').status_code == 401
        assert httpx.get(f'{url}/metrics', headers={'X-API-Key': 's3cret'}).status_code == 200
        assert httpx.post(f'{url}/predict', files={'file': ('d.png', png(test_items.path.iloc[0]))}).status_code == 200
        cid = subprocess.run([*compose, 'ps', '-q', 'api'], env=env, capture_output=True, text=True).stdout.strip()
        subprocess.run([*compose, 'stop', 'api'], env=env, capture_output=True, timeout=90)
        assert docker('inspect', '--format', '{{.State.ExitCode}}', cid) == '0'
    finally: subprocess.run([*compose, 'down', '-v'], env=env, capture_output=True, timeout=90)
