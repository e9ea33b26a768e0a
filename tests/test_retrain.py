"""`opsbook-retrain` from outside: the whole loop on the digits (a real papermill run, slow), its busy status when the
cool-down is not over or another retraining holds the lock, and the lock and cool-down in a bucket (moto's S3)."""
import hashlib, json, subprocess, sys
from pathlib import Path
import pytest
from PIL import Image, ImageOps
from opsbook.bundle import EXIT, load_bundle
from opsbook.data import digits_folder
from opsbook.registry import current, history, pointer, promote
from opsbook.retrain import EXIT_BUSY, Busy, check_cooldown, record, retrain, retrain_lock

def inverted(dst:Path, step:int=1) -> Path:
    "Every `step`-th of the embedded digits, inverted, as dst/<class>/<hash>.png, as opsbook-harvest writes them."
    for p in sorted(digits_folder().rglob('*.png'))[::step]:
        im = ImageOps.invert(Image.open(p).convert('L'))
        (dst/p.parent.name).mkdir(parents=True, exist_ok=True)
        tmp = dst/p.parent.name/'.tmp.png'; im.save(tmp)
        tmp.rename(tmp.with_name(f"{hashlib.sha256(tmp.read_bytes()).hexdigest()[:16]}.png"))
    return dst

def cli(*args, timeout:int=600) -> tuple[int, str, str]:
    "Run `opsbook-retrain` with `args` as its console script does."
    r = subprocess.run([sys.executable, '-c', 'from opsbook.retrain import retrain_cli; retrain_cli()', *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr

@pytest.fixture
def registry(small_bundle, tmp_path) -> Path:
    reg = tmp_path/'models'
    promote(reg, small_bundle, reason='v1')
    return reg

def test_busy_when_the_cooldown_is_not_over_or_another_retraining_runs(registry, tmp_path):
    prod = inverted(tmp_path/'production', step=20)
    record(registry, trigger='the first alarm', decision='refused')
    rc, out, err = cli(registry, '--production', prod, '--trigger', 'the same alarm again')
    assert rc == EXIT_BUSY and 'within the cool-down of 3600 s' in err and "'the first alarm'" in err, (rc, out, err)
    with retrain_lock(registry):
        with pytest.raises(Busy, match='another retraining of .* is running'): retrain(registry, prod, cooldown_s=0)
    assert [e['action'] for e in history(registry)] == ['promote', 'retrain']           # nothing else happened

def test_lock_and_cooldown_in_a_bucket(s3):
    from s3fs import S3FileSystem
    S3FileSystem.clear_instance_cache()
    reg = 's3://my-bucket/models'
    with retrain_lock(reg):
        with pytest.raises(Busy, match='retrain/lock.json'): retrain_lock(reg).__enter__()
    with retrain_lock(reg): pass
    check_cooldown(reg)
    record(reg, trigger='drift', decision='refused')
    with pytest.raises(Busy, match='within the cool-down'): check_cooldown(reg, 60)

@pytest.mark.slow
def test_retrain_promotes_a_challenger_that_learnt_the_shift(registry, small_bundle, tmp_path):
    prod = inverted(tmp_path/'production', step=2)
    champion = pointer(registry)['bundle']
    rc, out, err = cli(registry, '--production', prod, '--trigger', 'drift alarm: inverted digits', '--out', tmp_path/'work',
                       '--tolerance', '0.05', '-p', 'epochs', '2', '-p', 'wandb_mode', 'disabled')
    assert rc == EXIT['ok'], (rc, out, err[-3000:])
    ev = json.loads(out.splitlines()[-1])
    assert out.splitlines()[-2].startswith('promoted: challenger wins')
    s = ev['scores']
    assert s['challenger']['production']['accuracy'] >= s['champion']['production']['accuracy'] + 0.01
    assert (ev['from'], ev['to'], pointer(registry)['bundle']) == (ev['challenger'], ev['challenger'], ev['challenger'])
    assert [e['action'] for e in history(registry)] == ['promote', 'promote', 'retrain']
    assert history(registry)[1]['from'] == champion
    card = load_bundle(current(registry)).card
    r = card.evaluation['retrain']
    assert r['trigger'] == 'drift alarm: inverted digits' and r['promote'] and card.approved
    assert r['data']['original']['fingerprint'] == load_bundle(small_bundle).card.data['fingerprint']
    assert r['data']['production']['source'] == str(prod) and len(r['data']['production']['fingerprint']) == 64
    assert card.params['epochs'] == 2 and card.params['size'] == load_bundle(small_bundle).card.params['size']
    assert card.name == load_bundle(small_bundle).card.name
    assert (tmp_path/'work'/'report.ipynb').is_file() and (tmp_path/'work'/'data'/'train').is_dir()
    rc, out, err = cli(registry, '--production', prod)                            # the same alarm again: nothing done
    assert rc == EXIT_BUSY and 'within the cool-down' in err, (rc, out, err)
