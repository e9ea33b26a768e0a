"""The DVC pipeline as a newcomer uses it, with real `git`, `dvc` and papermill in a copy of the repository: repro,
no-op repro, a partial rerun after a parameter change with its metrics diff, plots and `.ci/retrain`, push and pull to the local
remote and to an S3 server (moto), a user's folder under `dvc add`, a queued two-point sweep, and the quality gate
failing its stage. The runs are tiny (2 epochs of 16×16 digits) and not judged by the gate (nor their variants), but in the last test."""
import io, json, os, shutil, subprocess, time
import pandas as pd, pytest, yaml
from conftest import ROOT

pytest.importorskip('dvc', reason='DVC is not installed: pip install -e ".[dev]"')
TINY = dict(epochs=2, size=16, wandb_mode='disabled', gate_margin=-1.0, optimize=dict(ratio=0.5, epochs=1, tolerance=1.0))

def run(repo, *cmd:str, timeout:int=600, ok:bool=True) -> subprocess.CompletedProcess:
    "Run `cmd` in `repo` as a user would (no IN_TEST, one thread per process); fail with its output unless `ok` is False."
    env = {k: v for k, v in os.environ.items() if k != 'IN_TEST'} | dict(OMP_NUM_THREADS='1', DVC_NO_ANALYTICS='1')
    r = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    if ok: assert r.returncode == 0, f"{' '.join(cmd)}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r

def set_params(repo, **params):
    p = repo/'params.yaml'
    p.write_text(yaml.safe_dump({**yaml.safe_load(p.read_text()), **params}, sort_keys=False))

def commit(repo, msg:str): run(repo, 'git', 'add', '-A'); run(repo, 'git', 'commit', '-qm', msg)

def ran(r) -> set[str]:
    "The stages a `dvc repro` ran."
    return {l.split("'")[1] for l in r.stdout.splitlines() if l.startswith('Running stage')}

@pytest.fixture(scope='module')
def repo(tmp_path_factory):
    "A fresh clone's worth of the repository, its parameters made tiny, reproduced once and committed."
    repo = tmp_path_factory.mktemp('clone')/'opsbook'
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True, text=True).stdout
    for f in files.splitlines():
        if (ROOT/f).is_file(): (repo/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT/f, repo/f)
    run(repo, 'git', 'init', '-q'); run(repo, 'git', 'config', 'user.email', 't@opsbook.invalid'); run(repo, 'git', 'config', 'user.name', 't')
    set_params(repo, **TINY)
    commit(repo, 'a clone, tiny parameters')
    r = run(repo, 'dvc', 'repro')
    assert ran(r) == {'data', 'train', 'evaluate', 'optimize@quantize', 'optimize@prune'}
    commit(repo, 'reproduced')
    return repo

def test_repro_writes_bundle_report_metrics_and_plots(repo):
    card = json.loads((repo/'runs'/'train'/'bundle'/'bundle.json').read_text())
    assert card['params']['dvc']['stage'] == 'train' and card['params']['epochs'] == 2 and card['approved']
    lock = yaml.safe_load((repo/'dvc.lock').read_text())['stages']['train']
    assert card['params']['dvc']['deps']['data/digits'] == next(d['md5'] for d in lock['deps'] if d['path'] == 'data/digits')
    report = json.loads((repo/'runs'/'train'/'report.ipynb').read_text())
    assert report['metadata']['papermill']['parameters']['epochs'] == 2
    metrics = json.loads((repo/'metrics'/'evaluate.json').read_text())
    assert metrics['accuracy'] > 0.5 and metrics['gate']['baselines']['logistic'] > 0.9
    assert len(pd.read_csv(repo/'runs'/'train'/'history.csv')) == 2
    assert set(json.loads(run(repo, 'dvc', 'metrics', 'show', '--json').stdout)['']['data']) >= {'metrics/evaluate.json', 'metrics/quantize.json', 'metrics/prune.json'}

def test_second_repro_does_nothing(repo):
    r = run(repo, 'dvc', 'repro')
    assert ran(r) == set() and 'Data and pipelines are up to date' in r.stdout
    assert 'up to date' in run(repo, 'dvc', 'status').stdout

def test_a_parameter_change_reruns_what_depends_on_it_and_diffs(repo):
    set_params(repo, lr=0.003)
    assert ran(run(repo, 'dvc', 'repro')) == {'train', 'evaluate', 'optimize@quantize', 'optimize@prune'}
    params = run(repo, 'dvc', 'params', 'diff', '--json').stdout
    lr = json.loads(params)['params.yaml']['lr']
    assert (lr['old'], lr['new']) == (0.01, 0.003)
    diff = json.loads(run(repo, 'dvc', 'metrics', 'diff', '--json').stdout)
    assert 'accuracy' in diff['metrics/evaluate.json']
    run(repo, 'dvc', 'plots', 'show', '-o', 'dvc_plots')
    page = (repo/'dvc_plots'/'index.html').read_text()
    assert all(p in page for p in ('history.csv', 'predictions.csv', 'calibration.csv'))
    set_params(repo, optimize=dict(ratio=0.25, epochs=1, tolerance=1.0))
    assert ran(run(repo, 'dvc', 'repro')) == {'optimize@prune', 'optimize@quantize'}
    commit(repo, 'lr 0.003, pruning 25%')
    r = run(repo, 'bash', '.ci/retrain', 'HEAD~1', str(repo.parent/'diff.md'))     # what the retrain workflow comments
    assert 'against `HEAD~1`' in r.stdout and '| metrics/evaluate.json |' in (repo.parent/'diff.md').read_text()

def wipe(repo):
    "Forget every output and the cache, as a fresh clone would have them."
    for d in ('runs', 'data/digits', '.dvc/cache'): shutil.rmtree(repo/d, ignore_errors=True)
    assert 'up to date' not in run(repo, 'dvc', 'status').stdout

def test_push_and_pull_with_the_default_local_remote(repo):
    mine = repo/'data'/'mine'
    for c in ('3', '8'): shutil.copytree(repo/'data'/'digits'/'train'/c, mine/c)
    n = len(list(mine.rglob('*.png')))
    run(repo, 'dvc', 'add', 'data/mine')
    commit(repo, "a user's folder under DVC")
    run(repo, 'dvc', 'push')
    assert (repo.parent/'opsbook-storage'/'files'/'md5').is_dir()
    wipe(repo); shutil.rmtree(mine)
    run(repo, 'dvc', 'pull')
    assert 'up to date' in run(repo, 'dvc', 'status').stdout
    assert len(list(mine.rglob('*.png'))) == n
    assert json.loads((repo/'runs'/'train'/'bundle'/'bundle.json').read_text())['params']['lr'] == 0.003

def test_push_and_pull_with_an_s3_remote(repo, s3):
    run(repo, 'dvc', 'remote', 'add', 's3', 's3://my-bucket/dvc')
    run(repo, 'dvc', 'push', '-r', 's3')
    assert s3.ls('my-bucket/dvc/files/md5')
    wipe(repo)
    run(repo, 'dvc', 'pull', '-r', 's3')
    assert 'up to date' in run(repo, 'dvc', 'status').stdout
    run(repo, 'dvc', 'remote', 'remove', 's3')

def test_a_queued_two_point_sweep(repo):
    for lr in ('0.02', '0.005'): run(repo, 'dvc', 'exp', 'run', '--queue', '-S', f'lr={lr}')
    run(repo, 'dvc', 'queue', 'start', '-j', '2')
    deadline = time.time() + 600
    while time.time() < deadline and any(s in run(repo, 'dvc', 'queue', 'status').stdout for s in ('Queued', 'Running')):
        time.sleep(3)
    status = run(repo, 'dvc', 'queue', 'status').stdout
    assert status.count('Success') == 2, status
    show = pd.read_csv(io.StringIO(run(repo, 'dvc', 'exp', 'show', '--csv').stdout))
    exps = show[show.Experiment.notna()]
    assert sorted(exps.lr) == [0.005, 0.02] and set(exps.State) == {'Success'}, show.to_string()
    assert exps['metrics/evaluate.json:accuracy'].between(0, 1).all()

def test_a_rejected_bundle_fails_its_stage(repo):
    r = run(repo, 'dvc', 'exp', 'run', '-S', 'data_dir=data/mine', '-S', 'gate_margin=1.0', ok=False)
    assert r.returncode != 0 and "failed to reproduce 'train'" in r.stderr + r.stdout
    assert 'NOT APPROVED' in r.stderr + r.stdout
    card = json.loads((repo/'runs'/'train'/'bundle'/'bundle.json').read_text())
    assert card['approved'] is False and card['classes'] == ['3', '8']
