"""The dashboard at ``/`` in real headless Chromium (Debian's chromium and chromedriver,
driven by Selenium): it logs in, shows the listeners and connections from the management
API, and publishes and watches topics over the native WebSocket protocol; a screenshot of
every run is kept as a test artifact."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from .brokers import ALICE, BrokerProcess
from .clients import Clients

TIMEOUT = 15.0
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: headless, and nothing that reaches for the network this machine does not have
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--window-size=1280,1100",
)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[WebDriver]:
    for program in (CHROMIUM, CHROMEDRIVER):
        if not Path(program).exists():
            pytest.fail(f"{program} is missing: scripts/test-deps.sh installs it")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    return WebDriverWait(driver, TIMEOUT).until(condition, f"timed out waiting for {what}")


def text_of(driver: WebDriver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def log_in(driver: WebDriver, broker: BrokerProcess, user: tuple[str, str]) -> None:
    assert broker.http_port, "no http listener"
    driver.get(f"http://{broker.host}:{broker.http_port}/")
    driver.find_element(By.ID, "username").send_keys(user[0])
    driver.find_element(By.ID, "password").send_keys(user[1])
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()


def fill(driver: WebDriver, element_id: str, text: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def watch(driver: WebDriver, topic_filter: str) -> None:
    """Watch ``topic_filter`` in the live view once its subscription is confirmed."""
    fill(driver, "watch-filter", topic_filter)
    driver.find_element(By.CSS_SELECTOR, "#watch button[type=submit]").click()
    wait_until(
        driver,
        lambda d: text_of(d, "#live-status") == f"watching {topic_filter}",
        f"the live view's subscription to {topic_filter}",
    )


def save_screenshot(driver: WebDriver, tmp_path: Path, name: str) -> None:
    """Into the test's tmp_path and, when set, $TEST_ARTIFACTS_DIR (CI keeps those)."""
    path = tmp_path / name
    driver.execute_script("window.scrollTo(0, 0)")
    assert driver.save_screenshot(str(path)), "no screenshot"
    artifacts = os.environ.get("TEST_ARTIFACTS_DIR")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / name)


def console_errors(driver: WebDriver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_dashboard_shows_the_broker_and_a_live_topic(
    broker: BrokerProcess, clients: Clients, chromium: WebDriver, tmp_path: Path
) -> None:
    topic = f"dashboard/{uuid.uuid4().hex[:8]}"
    log_in(chromium, broker, ALICE)

    # listeners and connections come from GET /api/overview
    mqtt_listener = f"{broker.host}:{broker.mqtt_port}"
    wait_until(chromium, lambda d: mqtt_listener in text_of(d, "#listeners"), "the listeners")
    assert f"{broker.host}:{broker.http_port}" in text_of(chromium, "#listeners")

    # the live view logs in over /ws and watches "#", then the filter the operator types
    wait_until(chromium, lambda d: text_of(d, "#live-status") == "watching #", "the live view")
    watch(chromium, f"{topic}/#")
    publisher = clients.paho(broker, "dashboard-publisher")
    payload = f"hello from paho {uuid.uuid4().hex[:8]}"
    publisher.publish(f"{topic}/temperature", payload, qos=1)
    wait_until(chromium, lambda d: payload in text_of(d, "#live"), "the message in the live view")
    assert f"{topic}/temperature" in text_of(chromium, "#live")

    # the open MQTT connection shows among the connections per protocol
    wait_until(chromium, lambda d: "mqtt" in text_of(d, "#connections"), "the mqtt connection")

    # a test message published from the page reaches an MQTT subscriber
    subscriber = clients.paho(broker, "dashboard-subscriber")
    assert subscriber.subscribe((f"{topic}/from-browser", 1)) == [1]
    fill(chromium, "publish-topic", f"{topic}/from-browser")
    fill(chromium, "publish-payload", "hello from the browser")
    chromium.find_element(By.CSS_SELECTOR, "#publish button[type=submit]").click()
    message = subscriber.get()
    assert (message.topic, message.payload) == (f"{topic}/from-browser", b"hello from the browser")
    wait_until(
        chromium,
        lambda d: text_of(d, "#publish-status") == f"published to {topic}/from-browser",
        "the publish confirmation",
    )

    save_screenshot(chromium, tmp_path, "dashboard.png")
    assert console_errors(chromium) == []


def test_dashboard_refuses_a_wrong_password(
    broker: BrokerProcess, chromium: WebDriver, tmp_path: Path
) -> None:
    log_in(chromium, broker, (ALICE[0], "not-the-password"))
    wait_until(
        chromium,
        lambda d: text_of(d, "#login-error") == "Wrong user name or password.",
        "the login error",
    )
    assert not chromium.find_element(By.ID, "app").is_displayed()
    save_screenshot(chromium, tmp_path, "dashboard-login-refused.png")
