"What the package promises, installed as users install it: opsbook's wheel in a fresh virtualenv, run in an empty folder."
import os, site, subprocess, sys, time, venv
from pathlib import Path
import httpx, pytest
from conftest import ROOT
from test_serve import free_port

@pytest.fixture(scope='module')
def installed(tmp_path_factory) -> dict:
    "An environment that runs opsbook from its wheel: a virtualenv seeing this Python's libraries, not this checkout."
    d = tmp_path_factory.mktemp('wheel')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '-w', str(d/'dist'), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    venv.create(d/'venv')
    # torch and the rest: this interpreter's libraries (a virtualenv's too, which --system-site-packages would miss), as
    # plain path entries, so that no .pth file there (an editable opsbook) is read; opsbook comes from the wheel
    ver = f'python{sys.version_info.major}.{sys.version_info.minor}'
    (d/'venv'/'lib'/ver/'site-packages'/'parent.pth').write_text('\n'.join(site.getsitepackages()) + '\n')
    subprocess.run([sys.executable, '-m', 'pip', '--python', str(d/'venv'/'bin'/'python'), 'install', '-q', '--no-deps', '--ignore-installed',
                    *map(str, (d/'dist').glob('opsbook-*.whl'))], check=True, capture_output=True, timeout=300)
    (d/'work').mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'IN_TEST')}
    env.update(PATH=f"{d/'venv'/'bin'}:{env['PATH']}", WANDB_MODE='disabled', OPSBOOK_CACHE=str(d/'cache'))
    r = subprocess.run(['python', '-c', 'import opsbook; print(opsbook.__file__)'], cwd=d/'work', env=env, capture_output=True, text=True)
    assert r.stdout.startswith(str(d/'venv')), r.stdout + r.stderr   # not this checkout, not an editable install
    return dict(cwd=d/'work', env=env)

def run(installed, *cmd, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **installed)

@pytest.mark.slow   # a papermill run and a server, 2-5 min on 2 cores: .ci/minimum runs it (the main CI has no room)
def test_train_then_serve_from_the_wheel_outside_a_checkout(installed):
    r = run(installed, 'opsbook-train', 'report.ipynb', '-p', 'epochs', '2', '-p', 'size', '16', '-p', 'run_name', 'w',
            '-p', 'wandb_mode', 'disabled', '-p', 'gate_margin', '-1')   # a smoke run: the gate is tested in test_train.py
    assert r.returncode == 0, r.stderr[-3000:]
    work = installed['cwd']
    assert (work/'report.ipynb').exists() and (work/'runs'/'w'/'bundle'/'bundle.json').exists(), sorted(work.rglob('*'))[:20]
    port = free_port()
    proc = subprocess.Popen(['opsbook-serve', '--bundle', 'runs/w/bundle', '--port', str(port), '--log-db', 'log.db'],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **installed)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f'http://127.0.0.1:{port}/readyz', timeout=1).status_code == 200: break
            except httpx.TransportError: time.sleep(0.2)
        png = next((work/'data'/'digits'/'test'/'7').glob('*.png'))   # the digits the run wrote beside it
        res = httpx.post(f'http://127.0.0.1:{port}/predict', files={'file': ('7.png', png.read_bytes(), 'image/png')}, timeout=30)
        assert res.status_code == 200 and res.json()['label'] in [str(i) for i in range(10)], res.text
    finally:
        proc.terminate(); proc.wait(timeout=60)

def test_nbdev_aliases_work_with_nbdev_and_say_what_to_install_without(installed):
    r = run(installed, 'nbdev_test', '--help', timeout=120)
    assert r.returncode == 0 and 'usage: nbdev-test' in r.stdout, r.stdout + r.stderr   # nbdev's own command line
    no_nbdev = "import sys; sys.modules['nbdev'] = None; from opsbook._dev import nbdev_export; nbdev_export()"  # as without the dev extra
    r = run(installed, 'python', '-c', no_nbdev, timeout=120)
    assert r.returncode == 2 and "pip install 'opsbook[dev]'" in r.stderr, r.stdout + r.stderr
