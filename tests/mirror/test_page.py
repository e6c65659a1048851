"""The mirror's front page in a real headless browser (Debian's chromium driven by selenium through
chromium-driver; `make test` installs both), its JSON twin, ``/healthz``, and the one-time note
that ``--host 0.0.0.0`` makes the store reachable from the network."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from modelhub.mirror import running
from modelhub.store import Manifest, Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# `make test` installs the browser; there a missing one is a failure, not a skip.
SERVE = (sys.executable, "-m", "modelhub", "serve")
REQUIRED = os.environ.get("MODELHUB_TEST_BROWSER") == "required"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless chromium, driven by selenium through Debian's chromium-driver, with its
    profile in the test's own temporary folder (chromium's default leaves one in /tmp)."""
    if not (CHROMIUM and CHROMEDRIVER):
        if REQUIRED:
            pytest.fail("no chromium/chromedriver on PATH (`make test` installs them)")
        pytest.skip("no chromium/chromedriver on PATH: `apt-get install chromium chromium-driver`")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_front_page_in_a_browser(
    browser: Any, store: Store, populated: dict[str, Manifest]
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    with running(store.root) as url:
        driver.get(url + "/")
        title = driver.title
        export = driver.find_element(By.ID, "export").text
        rows = driver.find_elements(By.CSS_SELECTOR, "#models tbody tr")
        table = [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in rows]
        sizes = [
            int(r.find_element(By.CSS_SELECTOR, "td.size").get_attribute("data-bytes"))
            for r in rows
        ]
        hubs = driver.find_element(By.ID, "hubs").text
    assert title == "modelhub mirror"
    assert export == f"export MODELHUB_MIRROR={url}"
    refs = {m.ref: m for m in populated.values()}
    assert sorted(row[0] for row in table) == sorted(refs)
    for row, size in zip(table, sizes, strict=True):
        manifest = refs[row[0]]
        assert row[1] == manifest.ref.split(":", 1)[0]  # the hub
        assert size == sum({rel: s for rel, _, s in manifest.records()}.values())
        assert row[4] == "public"
    for path in ("/hf", "/tfhub", "/kaggle", "/onnx"):
        assert url + path in hubs


def test_page_escapes_what_it_shows(browser: Any, store: Store) -> None:
    """A Host header is the client's: it lands in the page as text, never as markup."""
    from selenium.webdriver.common.by import By

    store.root.mkdir(parents=True, exist_ok=True)
    with running(store.root) as url:
        req = urllib.request.Request(url + "/", headers={"Host": "x<script>alert(1)</script>"})
        page = urllib.request.urlopen(req).read().decode()
        assert "<script>" not in page and "&lt;script&gt;" in page
        browser.get(url + "/")
        empty = browser.find_element(By.ID, "empty").text
    assert "No models" in empty


def test_json_for_accept_json(store: Store, populated: dict[str, Manifest]) -> None:
    with running(store.root) as url:
        req = urllib.request.Request(url + "/", headers={"Accept": "application/json"})
        with urllib.request.urlopen(req) as response:
            assert response.headers["Content-Type"].startswith("application/json")
            doc = json.load(response)
        with urllib.request.urlopen(url + "/") as plain:  # */*: the page
            assert plain.headers["Content-Type"].startswith("text/html")
        with urllib.request.urlopen(url + "/healthz") as health:
            assert health.status == 200 and json.load(health) == {"status": "ok"}
    assert doc["export"] == f"export MODELHUB_MIRROR={url}" and doc["mirror"] == url
    assert {m["ref"] for m in doc["models"]} == {m.ref for m in populated.values()}
    assert all(set(m) >= {"ref", "hub", "size", "files", "access"} for m in doc["models"])
    assert {h["hub"]: h["path"] for h in doc["hubs"]}["hf"] == "/hf"
    assert doc["withheld"] == 0


def test_network_host_is_announced_once(store: Store) -> None:
    store.root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [*SERVE, "--root", str(store.root), "--host", "0.0.0.0", "--port", "0", "--public"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        port = url.rsplit(":", 1)[1]
        for _ in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as health:
                assert health.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert err.count("reachable from the network") == 1, err


def test_loopback_host_says_nothing_of_the_network(store: Store) -> None:
    store.root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelhub", "serve", "--root", str(store.root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("http://127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert "network" not in err
