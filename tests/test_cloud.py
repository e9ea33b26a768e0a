"The commands of the page 'Train on a cloud VM' against a local S3 server (moto): data, bundle and report in a bucket."
import os, subprocess
import pytest
from conftest import ROOT, RUN
from opsbook.bundle import load_bundle
from opsbook.data import digits_folder, fingerprint

s3fs = pytest.importorskip('s3fs', reason="the cloud extra is not installed: pip install -e '.[cloud]'")
PAGE = ROOT/'nbs'/'cloud-vm.qmd'

def page_command(start:str) -> str:
    "The command on the page that begins with `start`."
    return next(l for l in PAGE.read_text().splitlines() if l.startswith(start))

def sh(cmd:str, timeout:int=300) -> subprocess.CompletedProcess:
    "Run `cmd` with bash from the repository root, as a user would (nbdev-test's IN_TEST left out)."
    env = {k: v for k, v in os.environ.items() if k != 'IN_TEST'}
    return subprocess.run(['bash', '-c', cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)

def test_the_pages_commands_train_from_and_to_a_bucket_and_reproduce_a_local_run(s3, digits_run):
    upload = page_command('python -c "from opsbook.train import upload_folder')
    r = sh(upload.replace("'data/pets'", repr(str(digits_folder()))))
    assert r.returncode == 0, r.stderr[-2000:]

    run = page_command('papermill nbs/train.ipynb s3://')
    r = sh(f"{run} {' '.join(f'-p {k} {v}' for k, v in RUN.items())} --no-progress-bar")
    assert r.returncode == 0, r.stderr[-3000:]
    report = s3.cat('my-bucket/runs/r1.ipynb').decode()
    assert 'uploaded' in report and 'test accuracy: torch' in report
    assert s3.ls('my-bucket/runs/r1/wandb') and not s3.exists('my-bucket/runs/r1/checkpoint')

    r = sh(page_command('python -c "from opsbook.train import fetch_folder'))
    assert r.returncode == 0, r.stderr[-2000:]
    card, local = load_bundle(r.stdout.strip()).card, load_bundle(digits_run).card
    assert card.data['source'] == 's3://my-bucket/data'
    assert card.data['fingerprint'] == local.data['fingerprint'] == fingerprint(digits_folder())
    for k in ('valid_loss', 'valid_accuracy', 'test_loss', 'test_accuracy'):
        assert card.metrics[k] == local.metrics[k], k       # the same data, parameters and seed: the same model
    assert card.git['commit'] and isinstance(card.git['dirty'], bool) and card.libraries['torch']
    assert {k: card.params[k] for k in RUN} == RUN and card.params['threads'] == local.params['threads']
    assert card.params['dvc'] is None and card.params['world_size'] == 1
