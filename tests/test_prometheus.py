"The alert rules and the dashboard against a real Prometheus scraping a real `opsbook-serve`: rules check and unit-test, the target is up, alerts fire when provoked, every dashboard query runs."
import io, json, re, shutil, signal, subprocess, time
from pathlib import Path
import httpx, pytest
from PIL import Image, ImageOps
from conftest import ROOT
from test_serve import Server, free_port

PROM = ROOT/'docker'/'prometheus'
DASHBOARD = ROOT/'docker'/'grafana'/'dashboards'/'opsbook.json'
pytestmark = pytest.mark.skipif(not shutil.which('prometheus'), reason="needs Prometheus: apt-get install prometheus")

def promtool(*args) -> subprocess.CompletedProcess:
    return subprocess.run(['promtool', *args], capture_output=True, text=True, timeout=60)

def test_rules_pass_promtool_check_and_unit_tests():
    r = promtool('check', 'rules', str(PROM/'alerts.yml'))
    assert r.returncode == 0, r.stdout + r.stderr
    r = promtool('test', 'rules', str(PROM/'alerts.test.yml'))
    assert r.returncode == 0, r.stdout + r.stderr

class Prometheus:
    "Debian's `prometheus` on 127.0.0.1, scraping `target` every second and evaluating the project's alert rules."
    def __init__(self, target:str, tmp:Path):
        self.url = f'http://127.0.0.1:{free_port()}'
        cfg = {'global': dict(scrape_interval='1s', evaluation_interval='1s'), 'rule_files': [str(PROM/'alerts.yml')],
               'scrape_configs': [dict(job_name='opsbook', static_configs=[dict(targets=[target])])]}
        (tmp/'prometheus.yml').write_text(json.dumps(cfg))   # JSON is YAML
        self.proc = subprocess.Popen(['prometheus', f'--config.file={tmp/"prometheus.yml"}', f'--storage.tsdb.path={tmp/"data"}',
                                      f'--web.listen-address={self.url[7:]}'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.wait(lambda: httpx.get(f'{self.url}/-/ready', timeout=1).status_code == 200, 'Prometheus ready')

    def wait(self, cond, what:str, timeout:float=60):
        "Poll `cond` until true; fail saying `what` did not happen."
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read()[-3000:]
            try:
                if cond(): return
            except httpx.TransportError: pass
            time.sleep(0.2)
        raise AssertionError(f'{what}: not within {timeout} s')

    def api(self, path:str, **params):
        r = httpx.get(f'{self.url}/api/v1/{path}', params=params, timeout=5).json()
        assert r['status'] == 'success', r
        return r['data']

    def health(self) -> str:
        "The scrape target's health: up, down, or unknown before its first scrape."
        return next((t['health'] for t in self.api('targets')['activeTargets']), 'unknown')
    def alerts(self) -> dict: return {a['labels']['alertname']: a['state'] for a in self.api('alerts')['alerts']}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)

def png(im:Image.Image) -> bytes:
    b = io.BytesIO(); im.save(b, 'PNG'); return b.getvalue()

def dashboard_queries() -> list[str]:
    "Every query of the Grafana dashboard, with Grafana's rate interval set to what a 1 s scrape needs."
    panels = json.loads(DASHBOARD.read_text())['panels']
    return [t['expr'].replace('$__rate_interval', '30s') for p in panels for t in p['targets']]

def test_alerts_fire_on_a_real_server(small_bundle, test_items, tmp_path):
    srv = Server(small_bundle, tmp_path/'log.db')
    prom = Prometheus(srv.url[7:], tmp_path)
    try:
        prom.wait(lambda: prom.health() == 'up', 'target up')
        assert prom.alerts() == {}
        for p in test_items.path[:60]:
            r = httpx.post(f'{srv.url}/predict', files={'file': ('d.png', png(ImageOps.invert(Image.open(p).convert('L'))))})
            assert r.status_code == 200
        verdict = httpx.get(f'{srv.url}/monitoring/drift', params={'window': 60}, timeout=120).json()
        assert verdict['drift'], verdict
        prom.wait(lambda: prom.alerts().get('OpsbookDrift') == 'firing', 'OpsbookDrift firing')
        for q in dashboard_queries():
            assert prom.api('query', query=q)['result'], f'dashboard query returns nothing: {q}'
        srv.stop()
        prom.wait(lambda: prom.health() == 'down', 'target down')
        prom.wait(lambda: prom.alerts().get('OpsbookNotReady') == 'pending', 'OpsbookNotReady pending')
    finally:
        srv.stop(); prom.stop()

def test_dashboard_and_rules_use_only_metrics_the_service_exports(small_bundle, tmp_path):
    srv = Server(small_bundle, tmp_path/'log.db')
    try: exported = httpx.get(f'{srv.url}/metrics').text
    finally: srv.stop()
    used = set(re.findall(r'opsbook_[a-z_]+', DASHBOARD.read_text() + (PROM/'alerts.yml').read_text()))
    assert {m for m in used if m not in exported} == set()
