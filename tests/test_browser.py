"A person's view: headless Chromium loads the page, uploads a digit and sees the predicted class."
import shutil
import pytest
from test_serve import Server

chromium = shutil.which('chromium')
pytestmark = pytest.mark.skipif(not chromium and not __import__('os').environ.get('CI'), reason='Debian chromium not installed')

def test_upload_shows_the_prediction(small_bundle, test_items, tmp_path):
    from playwright.sync_api import sync_playwright
    srv = Server(small_bundle, tmp_path/'log.db')
    item = test_items.iloc[0]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'])
            page = browser.new_page()
            page.goto(srv.url)
            page.wait_for_selector('text=digits-test')
            page.set_input_files('#file', item.path)
            label = page.wait_for_selector('#label', timeout=10_000).inner_text()
            page.screenshot(path=str(tmp_path/'page.png'))
            browser.close()
    finally: srv.stop()
    assert label == item.label
