"""A real `opsbook-serve` keeping its inputs (`--store-inputs`) in a folder and in a bucket (moto's S3 server): labels
sent back, `opsbook-harvest` run as its console script runs it, and the harvested folder read by the data chapter."""
import hashlib, io, json, sqlite3, subprocess, sys, time
from pathlib import Path
import httpx, pytest
from opsbook.bundle import EXIT
from opsbook.data import scan_folder
from test_serve import Server

def harvest(tmp:Path, *args) -> subprocess.CompletedProcess:
    "Run `opsbook-harvest` with `args` as its console script does (the script needs no install of this checkout)."
    script = tmp/'opsbook-harvest'
    script.write_text('import sys; from opsbook.inputs import harvest_cli; sys.exit(harvest_cli())')
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, timeout=120)

def until(cond, timeout=30):
    deadline = time.time() + timeout
    while not cond() and time.time() < deadline: time.sleep(0.1)
    return cond()

@pytest.fixture
def store(request, tmp_path) -> tuple[str, object]:
    "The input store: a folder, or a prefix of the moto bucket; and a function listing the sha256 of what it holds."
    if request.param == 'folder':
        root = tmp_path/'inputs'
        return str(root), lambda: {p.stem for p in root.glob('*/*')}
    fs = request.getfixturevalue('s3')
    from s3fs import S3FileSystem
    S3FileSystem.clear_instance_cache()                    # made for an earlier test's server
    def kept():
        fs.invalidate_cache()
        try: return {Path(p).stem for p in fs.find('my-bucket/inputs')}
        except FileNotFoundError: return set()
    return 's3://my-bucket/inputs', kept

@pytest.mark.parametrize('store', ['folder', 'bucket'], indirect=True)
def test_kept_labelled_harvested(store, small_bundle, test_items, tmp_path):
    url, kept = store
    items = test_items.groupby('label').head(4).sample(frac=1, random_state=0)       # 4 a class, shuffled
    labelled = items.groupby('label').head(3)                                          # 3 a class come back labelled
    data = {p: Path(p).read_bytes() for p in items.path}
    workers = '2' if url.startswith('s3://') else '1'                                # a bucket shared by workers
    srv = Server(small_bundle, tmp_path/'log.db', '--store-inputs', url, '--workers', workers)
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            answers = {p: c.post('/predict', files={'file': ('d.png', data[p], 'image/png')}).json() for p in items.path}
            for p, label in zip(labelled.path, labelled.label):
                assert c.post('/feedback', json=dict(request_id=answers[p]['request_id'], label=label)).status_code == 200
            shas = {p: hashlib.sha256(b).hexdigest() for p, b in data.items()}
            assert until(lambda: kept() >= set(shas.values())), 'the store did not receive every input'
            metrics = c.get('/metrics').text
    finally: srv.stop()
    assert 'opsbook_inputs_dropped_total 0.0' in metrics
    with sqlite3.connect(tmp_path/'log.db') as db: logged = dict(db.execute('select request_id, input_sha256 from predictions'))
    assert {answers[p]['request_id']: shas[p] for p in items.path} == logged          # each request names its image

    out = tmp_path/'production'
    r = harvest(tmp_path, '--log', tmp_path/'log.db', '--inputs', url, '--out', out, '--min-per-class', 3)
    assert r.returncode == EXIT['ok'], r.stderr
    report = json.loads(r.stdout)
    assert (report['added'], report['missing']) == (len(labelled), 0)
    assert report['classes'] == {str(k): 3 for k in sorted(set(items.label))}
    for p, label in zip(labelled.path, labelled.label):
        assert (out/label/f'{shas[p]}.png').read_bytes() == data[p]
    scan = scan_folder(out)                                                          # ready for training as it is
    assert sorted(zip(scan.items.rel, scan.items.label)) == sorted((f'{l}/{shas[p]}.png', l) for p, l in zip(labelled.path, labelled.label))
    again = harvest(tmp_path, '--log', tmp_path/'log.db', '--inputs', url, '--out', out, '--min-per-class', 4)
    assert again.returncode == EXIT['too_few'] and json.loads(again.stdout)['added'] == 0   # idempotent; 3 a class < 4

def test_bounded_in_a_bucket(s3, tmp_path):
    "A store in a bucket keeps the newest images within its limit, the oldest deleted, as a folder does."
    from s3fs import S3FileSystem
    from PIL import Image
    from opsbook.inputs import InputStore, input_key, kept_inputs
    S3FileSystem.clear_instance_cache()
    imgs = []
    for i in range(12):
        b = io.BytesIO(); Image.new('L', (8, 8), i).save(b, 'PNG'); imgs.append(b.getvalue())
    store = InputStore('s3://my-bucket/bounded', max_files=5)
    for i, x in enumerate(imgs):
        store.add(x)
        assert until(lambda: store.stored == i + 1, 10)
    store.close()
    kept = kept_inputs(store.st)
    assert 4 <= len(kept) <= 5 and store.pruned == 12 - len(kept) and store.dropped == 0
    assert input_key(imgs[-1]) in kept and input_key(imgs[0]) not in kept
    assert all(abs(t - time.time()) < 300 for _, t in kept.values())                  # S3's LastModified read as a time
