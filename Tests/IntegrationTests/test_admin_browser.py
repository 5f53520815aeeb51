"""A real browser (Debian's headless chromium via chromedriver and selenium) uses the admin page."""

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from conftest import ROOT, Stack, wait_until

PASSWORD = "browser test password 1"
ARTIFACTS = Path(os.environ.get("TG_TEST_ARTIFACTS", ROOT / ".build" / "test-artifacts"))


@pytest.fixture(scope="module")
def browser_stack():
    s = Stack().start()
    s.cli("admin", "password", "--user", "operator", input=PASSWORD + "\n")
    # Some traffic so the dashboard has something to show.
    for tenant in ("acme", "globex", "limited"):
        for i in range(3):
            httpx.post(f"{s.base}/tenant/{tenant}/v1/chat/completions", verify=False, timeout=30,
                       headers={"Authorization": f"Bearer {s.keys[tenant]}"},
                       json={"model": "mock-small", "messages": [{"role": "user", "content": f"hello {i}"}]})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def driver():
    options = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--ignore-certificate-errors",
                "--window-size=1280,1000", "--disable-gpu"]:
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    d = webdriver.Chrome(options=options, service=service)
    d.set_page_load_timeout(30)
    yield d
    d.quit()


def test_operator_logs_in_edits_a_tenant_and_sees_the_result(browser_stack, driver):
    base = browser_stack.base
    driver.get(base + "/admin/")
    assert driver.current_url.endswith("/admin/login")
    driver.find_element(By.ID, "user").send_keys("operator")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    assert wait_until(lambda: driver.current_url.rstrip("/").endswith("/admin"), timeout=10), driver.current_url
    assert "Dashboard" in driver.title
    # No console errors: the CSP allows everything the page uses (no inline script or style).
    assert wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "figure.chart svg"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "admin-dashboard.png"))

    driver.find_element(By.LINK_TEXT, "globex").click()
    assert wait_until(lambda: driver.find_elements(By.ID, "f-name"), timeout=10)
    name = driver.find_element(By.ID, "f-name")
    name.clear()
    name.send_keys("Globex Worldwide")
    rpm = driver.find_element(By.ID, "f-rate_limit-requests_per_minute")
    rpm.clear()
    rpm.send_keys("1234")
    prompt = driver.find_element(By.ID, "f-system_prompt")
    prompt.clear()
    prompt.send_keys("Browser-set prompt.")
    driver.find_element(By.CSS_SELECTOR, "form.settings button[type=submit]").click()
    assert wait_until(lambda: "done=saved" in driver.current_url, timeout=10)
    assert wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".flash"), timeout=10)
    assert "Every worker serves with the new settings" in driver.find_element(By.CSS_SELECTOR, ".flash").text
    assert driver.find_element(By.ID, "f-name").get_attribute("value") == "Globex Worldwide"
    assert driver.find_element(By.ID, "f-rate_limit-requests_per_minute").get_attribute("value") == "1234"
    driver.save_screenshot(str(ARTIFACTS / "admin-tenant.png"))

    # The API sees the change.
    def applied():
        info = httpx.get(f"{base}/tenant/globex/v1/tenant-info", verify=False,
                         headers={"Authorization": f"Bearer {browser_stack.keys['globex']}"}).json()
        return info["name"] == "Globex Worldwide" and info["rate_limit"]["requests_per_minute"] == 1234
    assert wait_until(applied, timeout=3)

    # A bad value is shown next to its field, with the typed value kept.
    rpm = driver.find_element(By.ID, "f-rate_limit-requests_per_minute")
    rpm.clear()
    rpm.send_keys("many")
    driver.find_element(By.CSS_SELECTOR, "form.settings button[type=submit]").click()
    assert wait_until(lambda: driver.find_elements(By.ID, "f-rate_limit-requests_per_minute-error"), timeout=10)
    error = driver.find_element(By.ID, "f-rate_limit-requests_per_minute-error")
    assert "integer" in error.text
    assert driver.find_element(By.ID, "f-rate_limit-requests_per_minute").get_attribute("value") == "many"

    # Log out: back to the login page, and the dashboard is closed again.
    driver.find_element(By.CSS_SELECTOR, "form.logout button").click()
    assert wait_until(lambda: driver.current_url.endswith("/admin/login"), timeout=10)
    driver.get(base + "/admin/")
    assert driver.current_url.endswith("/admin/login")
