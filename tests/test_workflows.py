"The GitHub workflows: actionlint finds nothing in them, each runs a script of .ci/, and those scripts do what the workflows expect."
import io, json, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pytest, yaml
from PIL import Image, ImageOps
from conftest import ROOT

WORKFLOWS = ROOT/'.github'/'workflows'

def test_actionlint_finds_nothing():
    shellcheck = shutil.which('shellcheck')
    assert shutil.which('actionlint') and shellcheck, 'actionlint and shellcheck come with `pip install -e ".[dev]"`'
    r = subprocess.run(['actionlint', '-no-color', f'-shellcheck={shellcheck}', '-pyflakes='], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr

def run_commands(wf:Path) -> list[str]:
    jobs = yaml.safe_load(wf.read_text())['jobs'].values()
    return [s['run'] for j in jobs for s in j['steps'] if 'run' in s]

@pytest.mark.parametrize('name,script', [('tests', 'run'), ('docs', 'docs'), ('images', 'images'), ('retrain', 'retrain'), ('drift', 'drift'),
                                         ('minimum', 'minimum')])
def test_each_workflow_runs_the_script_ci_runs(name, script):
    assert any(f'bash .ci/{script}' in cmd for cmd in run_commands(WORKFLOWS/f'{name}.yml')), f'{name}.yml does not run .ci/{script}'

def test_workflows_run_only_scripts_that_exist():
    called = {w.split()[0] for wf in WORKFLOWS.glob('*.yml') for cmd in run_commands(wf) for w in cmd.split('.ci/')[1:]}
    assert called and all((ROOT/'.ci'/s).is_file() for s in called - {'images'}), called

def png(im) -> bytes:
    b = io.BytesIO(); im.save(b, 'PNG'); return b.getvalue()

@pytest.fixture(scope='module')
def logs(small_bundle, test_items, tmp_path_factory) -> dict[str, Path]:
    "Request logs of the small bundle: a few digits, and a hundred inverted digits."
    from fastapi.testclient import TestClient
    from opsbook.serve import create_app
    d = tmp_path_factory.mktemp('logs')
    imgs = [Image.open(p) for p in test_items.path.iloc[np.random.default_rng(0).permutation(len(test_items))[:100]]]
    for name, batch in [('few', imgs[:10]), ('drifted', [ImageOps.invert(im.convert('L')) for im in imgs])]:
        with TestClient(create_app(bundle=str(small_bundle), log_db=str(d/f'{name}.db'))) as client:
            for im in batch: client.post('/predict', files={'file': ('d.png', png(im))})
    return {n: d/f'{n}.db' for n in ('few', 'drifted')}

def drift(tmp_path, **env) -> subprocess.CompletedProcess:
    env = {**os.environ, 'OPSBOOK_DRIFT_WINDOW': '100', **env}
    return subprocess.run(['bash', str(ROOT/'.ci'/'drift'), 'report'], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

def test_drift_script_flags_drift_fetching_bundle_and_log_by_url(small_bundle, logs, tmp_path):
    r = drift(tmp_path, OPSBOOK_BUNDLE=small_bundle.as_uri(), OPSBOOK_LOG=logs['drifted'].as_uri())
    assert r.returncode == 1, r.stdout + r.stderr
    assert json.loads((tmp_path/'report-verdict.json').read_text())['drift'] is True
    assert (tmp_path/'report.html').stat().st_size and (tmp_path/'report.json').exists()

def test_drift_script_passes_when_too_few_requests_to_judge(small_bundle, logs, tmp_path):
    r = drift(tmp_path, OPSBOOK_BUNDLE=str(small_bundle), OPSBOOK_LOG=str(logs['few']))
    assert r.returncode == 0 and 'too few requests' in r.stdout, r.stdout + r.stderr

def test_drift_script_errors_are_not_drift(small_bundle, tmp_path):
    r = drift(tmp_path, OPSBOOK_BUNDLE=str(small_bundle), OPSBOOK_LOG=str(tmp_path/'missing.db'))
    assert r.returncode == 2 and 'does not exist' in r.stderr, r.stdout + r.stderr
    r = drift(tmp_path, OPSBOOK_BUNDLE='', OPSBOOK_LOG='x')
    assert r.returncode == 2 and 'OPSBOOK_BUNDLE' in r.stderr

PIPELINE = {'stages': {'train': {'cmd': 'python train.py', 'deps': ['train.py'], 'params': ['lr'],
                                 'metrics': [{'metrics.json': {'cache': False}}]}}}
TRAIN = "import json, yaml\njson.dump({'accuracy': yaml.safe_load(open('params.yaml'))['lr'] * 5}, open('metrics.json', 'w'))\n"

@pytest.mark.skipif(not shutil.which('dvc'), reason='dvc not installed (the retrain workflow installs it)')
def test_retrain_script_reproduces_and_diffs_the_metrics(tmp_path):
    repo = tmp_path/'repo'
    (repo/'.ci').mkdir(parents=True)
    shutil.copy(ROOT/'.ci'/'retrain', repo/'.ci'/'retrain')
    (repo/'dvc.yaml').write_text(yaml.safe_dump(PIPELINE))
    (repo/'train.py').write_text(TRAIN)
    (repo/'params.yaml').write_text('lr: 0.1\n')
    git = lambda *a: subprocess.run(['git', '-c', 'user.name=ci', '-c', 'user.email=ci@opsbook.invalid', *a], cwd=repo, check=True, capture_output=True)
    git('init', '-q', '-b', 'main')
    subprocess.run(['dvc', 'init', '-q'], cwd=repo, check=True)
    subprocess.run(['dvc', 'repro', '-q'], cwd=repo, check=True)
    git('add', '-A'); git('commit', '-qm', 'baseline')
    (repo/'params.yaml').write_text('lr: 0.2\n')
    r = subprocess.run(['bash', '.ci/retrain', 'main', 'diff.md'], cwd=repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    diff = (repo/'diff.md').read_text()
    assert 'accuracy' in diff and '0.5' in diff and '1.0' in diff, diff

@pytest.mark.skipif(not shutil.which('dvc'), reason='dvc not installed (the dev extra installs it)')
def test_dvclock_fails_when_a_dependency_or_parameter_left_the_lock_behind(tmp_path):
    repo = tmp_path/'repo'
    repo.mkdir()
    (repo/'dvc.yaml').write_text(yaml.safe_dump(PIPELINE))
    (repo/'train.py').write_text(TRAIN)
    (repo/'params.yaml').write_text('lr: 0.1\n')
    git = lambda *a: subprocess.run(['git', '-c', 'user.name=ci', '-c', 'user.email=ci@opsbook.invalid', *a], cwd=repo, check=True, capture_output=True)
    git('init', '-q', '-b', 'main')
    subprocess.run(['dvc', 'init', '-q'], cwd=repo, check=True)
    subprocess.run(['dvc', 'repro', '-q'], cwd=repo, check=True)
    git('add', '-A'); git('commit', '-qm', 'the pipeline and its lock')
    (repo/'metrics.json').unlink()   # outputs are not compared: a fresh clone has none
    check = lambda: subprocess.run([sys.executable, str(ROOT/'.ci'/'dvclock.py')], cwd=repo, capture_output=True, text=True, timeout=120)
    r = check()
    assert r.returncode == 0, r.stdout + r.stderr
    (repo/'params.yaml').write_text('lr: 0.2\n')
    (repo/'train.py').write_text(TRAIN + '# changed\n')
    r = check()
    assert r.returncode == 1 and '- train: train.py modified' in r.stderr and '- train: parameter lr in params.yaml modified' in r.stderr, r.stderr
    assert 'dvc repro' in r.stderr

def test_the_committed_dvc_lock_and_metrics_hold_no_machine_paths():
    for f in [ROOT/'dvc.lock', *(ROOT/'metrics').glob('*')]:
        text = f.read_text()
        assert not any(s in text for s in (str(ROOT), str(Path.home()), '/tmp/')), f"{f.name} holds a path of this machine"
