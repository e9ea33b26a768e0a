"""The API contract is true: schemathesis runs every check (`--checks all`) against a real `opsbook-serve`, without and
with an API key, and finds no failure.

Uploads are declared `format: binary`; the hooks in schemathesis_images.py draw them as images of every accepted
format, whole or damaged, or as any bytes, so that 200 answers are checked against their schema and the decoder's
error paths are exercised (they found a malformed PNG header answered 500). Before the run, 40 predictions are logged
so that /monitoring/drift judges a real window and answers both its JSON verdict and its HTML report.

One check is configured, in schemathesis.toml: positive_data_acceptance expects a schema-valid request to be accepted,
but no JSON Schema can say "bytes that decode as an image", so for the two upload operations it also accepts 415 (not
an image) and 422 (truncated or corrupt), the statuses the schema documents for bytes that are not an image. The empty
upload and the empty batch need no exception: the schema declares them invalid (`minLength: 1` on an upload,
`minItems: 1` on a batch), so schemathesis sends them only as negative data, which must be refused.
"""
import os, shutil, signal, subprocess
from pathlib import Path
import httpx, pytest
from test_serve import Server

HERE = Path(__file__).parent
KEY = 'contract-key'

def schemathesis(url:str, cwd:Path, *args:str) -> subprocess.CompletedProcess:
    "`schemathesis run` with every check against the schema at `url`, seeded and bounded."
    cmd = [shutil.which('schemathesis'), '--config-file', str(HERE/'schemathesis.toml'), 'run', f'{url}/openapi.json',
           '--checks', 'all', '--max-examples', '100', '--seed', '1', '--workers', '1', *args]
    env = {**os.environ, 'SCHEMATHESIS_HOOKS': str(HERE/'schemathesis_images.py')}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)

@pytest.mark.parametrize('keyed', [False, True], ids=['no-key', 'key-and-protect-predict'])
def test_schemathesis_finds_no_failure(small_bundle, test_items, tmp_path, keyed):
    srv = Server(small_bundle, tmp_path/'log.db', *(['--api-key', KEY, '--protect-predict'] if keyed else []))
    headers = {'X-API-Key': KEY} if keyed else {}
    try:
        schema = httpx.get(f'{srv.url}/openapi.json').json()
        assert ('securitySchemes' in schema['components']) == keyed
        with httpx.Client(base_url=srv.url, headers=headers, timeout=30) as client:
            for p in test_items.path[:40]:
                assert client.post('/predict', files={'file': ('d.png', Path(p).read_bytes())}).status_code == 200
            assert client.get('/monitoring/drift', timeout=120).status_code == 200   # Evidently imported: checks fit schemathesis' 10 s
        r = schemathesis(srv.url, tmp_path, *(['--header', f'X-API-Key: {KEY}'] if keyed else []))
        assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]
        assert 'No issues found' in r.stdout
    finally: assert srv.stop() in (0, -signal.SIGTERM)                      # shut down cleanly, no abort
