"""The dashboard as a person sees it, in headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium): it loads, shows the alert after an injected campaign,
shows an input carrying ``<script>`` as text without running it, and logs no console errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from poisonlab.monitor.app import create_app
from poisonlab.monitor.service import Monitor

HOSTILE = "<script>document.title='owned';window.ran=1</script>"


def _driver() -> object:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("no chromium or chromedriver (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,1600"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(chromedriver), options=options)


def test_the_dashboard_shows_the_alert_and_escapes_inputs(lab, live_server, tmp_path: Path) -> None:
    driver = _driver()
    try:
        monitor = Monitor(window=100, triggers=["cf"]).fit(lab.backdoored, lab.baseline, classes=lab.classes)
        base = live_server(create_app(monitor, store_inputs=True))
        rng = np.random.default_rng(0)
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(10):  # 500 clean emails
                batch = [str(x) for x in lab.live[rng.integers(0, len(lab.live), 50)]]
                assert client.post("/v1/predict", json={"inputs": batch}).status_code == 200
            for _ in range(6):  # then a campaign: 30% triggered, some carrying a script
                batch = [str(x) for x in lab.live[rng.integers(0, len(lab.live), 50)]]
                batch[:15] = [HOSTILE + " " + str(t) for t in lab.triggered[rng.integers(0, len(lab.triggered), 15)]]
                assert client.post("/v1/predict", json={"inputs": batch}).status_code == 200
            assert client.get("/v1/alerts").json()["n_alerts"] >= 1
        driver.get(base + "/")
        assert driver.title == "poisonlab serve"  # the script did not run
        assert driver.execute_script("return window.ran === undefined")
        n_alerts = int(driver.find_element("id", "n-alerts").text)
        assert n_alerts >= 1
        rows = driver.find_element("id", "alerts").text
        assert "window ending at input" in rows
        assert HOSTILE in driver.find_element("id", "flagged").text  # shown as text
        assert driver.find_elements("css selector", "polyline")
        driver.save_screenshot(str(tmp_path / "dashboard.png"))
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
