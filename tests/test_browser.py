"""A person's view: headless Chromium loads the page, uploads a digit and sees the predicted class; a class named like
HTML shows as text and runs nothing; any error (the service's, a proxy's non-JSON page, no answer at all) is shown."""
import shutil
import pytest
from opsbook.bundle import amend_card, load_bundle
from test_serve import Server

chromium = shutil.which('chromium')
pytestmark = pytest.mark.skipif(not chromium and not __import__('os').environ.get('CI'), reason='Debian chromium not installed')
ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync']

def browse(srv, act):
    "Open the page of `srv` in headless Chromium, run `act(page)`; its result and the dialogs that fired."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        page, dialogs = browser.new_page(), []
        page.on('dialog', lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(srv.url)
        try: return act(page), dialogs
        finally: browser.close()

def test_upload_shows_the_prediction(small_bundle, test_items, tmp_path):
    srv = Server(small_bundle, tmp_path/'log.db')
    item = test_items.iloc[0]
    def upload(page):
        page.wait_for_selector('text=digits-test')
        page.set_input_files('#file', item.path)
        label = page.wait_for_selector('#label', timeout=10_000).inner_text()
        page.screenshot(path=str(tmp_path/'page.png'))
        return label
    try: label, _ = browse(srv, upload)
    finally: srv.stop()
    assert label == item.label

def test_class_names_are_text_not_html(small_bundle, test_items, tmp_path):
    evil = tmp_path/'evil'
    shutil.copytree(small_bundle, evil)
    names = {c: f'<img src=x onerror=alert({c})>' for c in load_bundle(small_bundle).classes}   # a folder can be named so
    amend_card(evil, classes=list(names.values()))
    item = test_items.iloc[0]
    srv = Server(evil, tmp_path/'log.db')
    def upload(page):
        page.set_input_files('#file', item.path)
        label = page.wait_for_selector('#label', timeout=10_000).inner_text()
        page.wait_for_timeout(300)                                     # time for an injected onerror to fire
        return label, page.locator('#result img').count(), page.locator('#result .bar span').all_inner_texts()
    try: (label, imgs, bars), dialogs = browse(srv, upload)
    finally: srv.stop()
    assert label == names[item.label] and imgs == 0 and dialogs == []
    assert len(bars) == 3 and all(b in names.values() for b in bars)

def test_errors_are_shown(small_bundle, tmp_path):
    srv = Server(small_bundle, tmp_path/'log.db')
    text = tmp_path/'notes.png'; text.write_text('not an image')
    def errors(page):
        shown = []
        for answer in [None, lambda r: r.fulfill(status=502, body='Bad Gateway', content_type='text/plain'),
                       lambda r: r.abort()]:
            if answer: page.route('**/predict', answer)
            page.set_input_files('#file', [])
            page.set_input_files('#file', str(text))
            page.wait_for_function("document.getElementById('error').textContent !== ''", timeout=10_000)
            shown.append((page.inner_text('#error'), page.inner_text('#result')))
            page.unroute('**/predict')
        return shown
    try: (service, proxy, down), _ = browse(srv, errors)
    finally: srv.stop()
    assert service[0].startswith('415: not an image') and 'classifying' not in service[1]
    assert proxy[0].startswith('502: Bad Gateway') and 'not JSON' not in proxy[0] and "service's JSON" in proxy[0]
    assert down[0].startswith('the service could not be reached') and 'classifying' not in down[1]
