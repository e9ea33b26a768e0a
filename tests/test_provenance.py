"Under DVC, a run records its stage: the dependency hashes and lock entry that dvc.lock then holds."
import hashlib, json, os, subprocess, sys
import pytest, yaml

pytest.importorskip('dvc', reason='DVC is not installed')

def test_dvc_stage_matches_the_lock_dvc_writes(tmp_path):
    (tmp_path/'data').mkdir()
    (tmp_path/'data'/'a.txt').write_text('images, say')
    (tmp_path/'params.yaml').write_text('epochs: 2\nlr: 0.01\n')
    record = "import json; from opsbook.train import dvc_stage; json.dump(dvc_stage(), open('stage.json', 'w'))"
    stage = dict(cmd=f'{sys.executable} -c "{record}"', deps=['data'], params=['epochs', 'lr'], outs=['stage.json'])
    (tmp_path/'dvc.yaml').write_text(yaml.safe_dump(dict(stages=dict(train=stage))))
    for cmd in (['dvc', 'init', '--no-scm', '-q'], ['dvc', 'repro', '-q']):
        r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads((tmp_path/'stage.json').read_text())
    lock = yaml.safe_load((tmp_path/'dvc.lock').read_text())['stages']['train']
    lock.pop('outs')
    assert got['stage'] == 'train'
    assert got['deps'] == {'data': lock['deps'][0]['md5']}
    assert got['lock_sha256'] == hashlib.sha256(json.dumps(lock, sort_keys=True).encode()).hexdigest()
