"""The model registry from outside: `opsbook-promote`'s exit statuses, a registry in a bucket (moto's S3 server), and
promotions at the same time, in separate processes, ending with a history and a pointer that agree."""
import json, shutil, subprocess, sys
from pathlib import Path
import pytest
from opsbook.bundle import EXIT, load_bundle
from opsbook.registry import current, history, pointer, promote, rollback

def versioned(src:Path, dst:Path, version:str) -> Path:
    "A copy of the bundle at `src` at `dst`, its card naming `version` (the files, and so their hashes, are the same)."
    shutil.copytree(src, dst)
    c = json.loads((dst/'bundle.json').read_text()); c['version'] = version
    (dst/'bundle.json').write_text(json.dumps(c))
    return dst

@pytest.fixture(scope='module')
def bundles(small_bundle, tmp_path_factory) -> list[Path]:
    "Four versions of the session's digits bundle, approved by the real quality gate."
    from opsbook.evaluate import gate
    d = tmp_path_factory.mktemp('versions')
    first = versioned(small_bundle, d/'v1', 'v1')
    assert gate(first)['approved']
    return [first] + [versioned(first, d/f'v{i}', f'v{i}') for i in (2, 3, 4)]

def cli(tmp:Path, *args) -> subprocess.Popen:
    "Start `opsbook-promote` with `args` as its console script runs it (the script needs no install of this checkout)."
    script = tmp/'opsbook-promote'
    script.write_text('import sys\nfrom opsbook.registry import promote_cli\nsys.exit(promote_cli())\n')
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

@pytest.fixture
def bucket(s3) -> str:
    "A registry URL in the moto bucket; fsspec's cached filesystems, made for an earlier test's server, are dropped."
    from s3fs import S3FileSystem
    S3FileSystem.clear_instance_cache()
    return 's3://my-bucket/models'

def run(tmp:Path, *args) -> tuple[int, str]:
    out, err = (p := cli(tmp, *args)).communicate(timeout=120)
    return p.returncode, out + err

def consistent(reg:str|Path):
    "The pointer names the last event, serials count up from 1, and each event starts where the one before ended."
    evs, p = history(reg), pointer(reg)
    assert [e['serial'] for e in evs] == list(range(1, len(evs) + 1))
    assert (p['serial'], p['bundle']) == (evs[-1]['serial'], evs[-1]['to'])
    for a, b in zip(evs, evs[1:]): assert b['from'] == a['to'], (a, b)

def test_cli_exit_statuses(bundles, tmp_path):
    reg = tmp_path/'models'
    assert run(tmp_path, reg, bundles[0], '--reason', 'first')[0] == EXIT['ok']
    assert run(tmp_path, reg, '--rollback')[0] == EXIT['bad_input']              # nothing earlier
    tampered = tmp_path/'tampered'; shutil.copytree(bundles[1], tampered)
    with open(tampered/'model.onnx', 'ab') as f: f.write(b'\0')
    rc, out = run(tmp_path, reg, tampered)
    assert rc == EXIT['bad_input'] and 'does not match its sha256' in out, out
    assert pointer(reg)['version'] == 'v1' and len(history(reg)) == 1
    assert run(tmp_path, reg, bundles[1], '--reason', 'second')[0] == EXIT['ok']
    rc, out = run(tmp_path, reg, '--rollback', '--reason', 'bad p99')
    assert rc == EXIT['ok'] and json.loads(out)['to'] == 'digits-test-v1', out
    assert run(tmp_path, reg)[0] == EXIT['usage']                                 # neither a bundle nor --rollback
    assert [e['reason'] for e in history(reg)] == ['first', 'second', 'bad p99']
    consistent(reg)

def test_bucket_registry(bundles, s3, bucket, tmp_path):
    reg = bucket
    promote(reg, bundles[0], reason='first')
    promote(reg, bundles[1], reason='second')
    assert s3.exists('my-bucket/models/bundles/digits-test-v2/model.onnx') and not s3.exists('my-bucket/models/lock.json')
    local = current(reg)
    assert local.is_relative_to(tmp_path/'cache') and load_bundle(local).card.version == 'v2'
    mtime = (local/'model.onnx').stat().st_mtime_ns
    assert current(reg) == local and (local/'model.onnx').stat().st_mtime_ns == mtime   # cached by version
    tampered = tmp_path/'tampered'; shutil.copytree(bundles[2], tampered)
    with open(tampered/'model.onnx', 'ab') as f: f.write(b'\0')
    with pytest.raises(ValueError, match='does not match its sha256'): promote(reg, tampered)
    assert pointer(reg)['version'] == 'v2' and not s3.exists('my-bucket/models/bundles/digits-test-v3')
    assert rollback(reg, reason='back')['to'] == 'digits-test-v1'
    assert load_bundle(current(reg)).card.version == 'v1'
    consistent(reg)

@pytest.mark.parametrize('where', ['folder', 'bucket'])
def test_concurrent_promotions_end_consistent(bundles, tmp_path, where, request):
    reg = tmp_path/'models' if where == 'folder' else request.getfixturevalue('bucket')
    procs = [cli(tmp_path, reg, b, '--reason', f'race {i}') for i, b in enumerate(bundles[:3])]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-2000:] for o in outs]
    evs = history(reg)
    assert sorted(e['to'] for e in evs) == ['digits-test-v1', 'digits-test-v2', 'digits-test-v3']
    assert evs[0]['from'] is None
    consistent(reg)
    assert load_bundle(current(reg)).card.version == pointer(reg)['version']
