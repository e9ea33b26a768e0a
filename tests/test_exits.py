"""Every command exits with its documented status (`EXIT`: 0 ok, 1 drift, 2 usage, 3 too few rows, 4 bad input), and
none aborts at exit (SIGABRT, the shell's status 134) however often it runs.

Native thread pools (pyarrow's, ONNX Runtime's) still running when the interpreter tears down can abort a process
after its work is done: `opsbook-drift` and a torch-free bundle load are run many times, several at once, and each
run must end with its expected status. The slow test runs them 120 times each (bench/RESULTS.md, "Exit statuses").
"""
import shutil, signal, subprocess, sys, time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import pytest
from fastapi.testclient import TestClient
from opsbook.bundle import EXIT, amend_card
from opsbook.serve import create_app

LOAD = """
import sys
sys.modules['torch'] = None
from opsbook.bundle import load_bundle
b = load_bundle(sys.argv[1])
probs, emb = b.predict(sys.argv[2:])
print(probs.argmax(1).tolist(), len(b.reference()), len(b.weights()))
"""

@pytest.fixture(scope='module')
def log(small_bundle, test_items, tmp_path_factory) -> Path:
    "A request log of 60 predictions of held-out images, shuffled: a window `opsbook-drift` judges as no drift."
    db = tmp_path_factory.mktemp('log')/'log.db'
    with TestClient(create_app(bundle=str(small_bundle), log_db=str(db))) as client:
        for p in test_items.path.sample(60, random_state=0):
            assert client.post('/predict', files={'file': ('d.png', Path(p).read_bytes())}).status_code == 200
    return db

def statuses(cmd:list[str], n:int, parallel:int=4) -> Counter:
    "How many of `n` runs of `cmd`, `parallel` at a time, ended with each exit status (-6: aborted)."
    def run(_): return subprocess.run(cmd, capture_output=True).returncode
    with ThreadPoolExecutor(parallel) as ex: return Counter(ex.map(run, range(n)))

def commands(bundle:Path, log:Path, items) -> dict:
    "Each command under test, with the status it must end with."
    drift = ['opsbook-drift', '--bundle', str(bundle), '--log', str(log), '--window', '60']
    return {'opsbook-drift': (drift, EXIT['ok']),
            'torch-free load': ([sys.executable, '-c', LOAD, str(bundle), *map(str, items.path[:3])], 0)}

def check_exits(name:str, cmd:list[str], want:int, n:int):
    t0 = time.monotonic()
    got = statuses(cmd, n)
    print(f"{name}: {n} runs in {time.monotonic() - t0:.0f} s, exit statuses {dict(got)}")
    assert got == {want: n}, f"{name}: {dict(got)} in {n} runs (-{int(signal.SIGABRT)}: aborted at exit)"

NAMES = ['opsbook-drift', 'torch-free load']

@pytest.mark.parametrize('name', NAMES)
def test_no_abort_in_10_runs(small_bundle, log, test_items, name):
    check_exits(name, *commands(small_bundle, log, test_items)[name], 10)

@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize('name', NAMES)
def test_no_abort_in_120_runs(small_bundle, log, test_items, name):
    check_exits(name, *commands(small_bundle, log, test_items)[name], 120)

CASES = [  # the command, the status it must end with, what its message must say (evaluate's bad input: test_train.py)
    (['opsbook-serve'], 'usage', 'bundle'),
    (['opsbook-serve', '--bundle', '{b}', '--port', 'x'], 'usage', 'valid integer'),
    (['opsbook-serve', '--bundle', '{b}', '--protect-predict'], 'usage', 'protect_predict needs an api_key'),
    (['opsbook-serve', '--bundle', '{tmp}'], 'bad_input', 'not a model bundle'),
    (['opsbook-serve', '--bundle', '{b}', '--host', '0.0.0.0'], 'usage', 'pass --no-auth (OPSBOOK_NO_AUTH=1)'),
    (['opsbook-serve', '--bundle', '{b}', '--host', '0.0.0.0', '--api-key', ''], 'usage', 'the API key is empty'),
    (['opsbook-drift'], 'usage', '--bundle'),
    (['opsbook-drift', '--bundle', '{b}', '--window', 'x'], 'usage', 'invalid int value'),
    (['opsbook-drift', '--bundle', '{tmp}'], 'bad_input', 'not a model bundle'),
    (['opsbook-evaluate'], 'usage', '--bundle'),
    (['opsbook-optimize', '--bundle', '{b}', '--ratio', 'x'], 'usage', 'invalid float value'),
    (['opsbook-optimize', '--bundle', '{tmp}'], 'bad_input', 'not a model bundle')]

def test_every_command_exits_with_its_documented_status(small_bundle, tmp_path):
    def run(case) -> tuple[int, bool]:
        args, _, says = case
        r = subprocess.run([a.format(b=small_bundle, tmp=tmp_path) for a in args], capture_output=True, text=True)
        return r.returncode, says in r.stderr
    with ThreadPoolExecutor(4) as ex: got = dict(zip([' '.join(c[0]) for c in CASES], ex.map(run, CASES)))
    assert got == {' '.join(args): (EXIT[status], True) for args, status, _ in CASES}

def test_a_card_without_a_verdict_is_refused_unless_asked(small_bundle, tmp_path):
    "A bundle no quality gate judged (`approved: null`) is refused like a rejected one: status 4, what to do; served when asked."
    from test_serve import Server
    b = tmp_path/'unjudged'
    shutil.copytree(small_bundle, b); amend_card(b, approved=None)
    r = subprocess.run(['opsbook-serve', '--bundle', str(b)], capture_output=True, text=True, timeout=60)
    assert r.returncode == EXIT['bad_input'], r.stderr[-2000:]
    assert all(s in r.stderr for s in ('has no verdict from a quality gate', f'opsbook-evaluate --bundle {b}', '--judge', '--allow-unapproved')), r.stderr
    srv = Server(b, tmp_path/'log.db', '--allow-unapproved')          # ready when /readyz answers 200
    assert srv.stop() in (0, -15)
