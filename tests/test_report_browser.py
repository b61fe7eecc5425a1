"""The HTML report in a real headless chromium, opened from disk: it renders, the flips open, nothing runs.

Screenshots land in artifacts/ (gitignored) for a person to look at. Without chromium the tests skip,
except under CI=true, where a missing browser is a failure: CI must install it (`apt-get install chromium
chromium-driver`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.compare import summarize_run
from harness.outcomes import Outcome
from harness.report import write_reports
from tests.factories import record, results
from tests.test_report import XSS_ANSWER, XSS_SCENARIO, XSS_TOOL, compare, conversation, ladder

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        why = f"chromium not installed ({', '.join(missing)} missing): apt-get install -y chromium chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI must run the browser tests")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _screenshot(driver, name: str) -> Path:
    """A full-page screenshot (the window grown to the page's height, capped) kept in artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(int(height), 800), 16000))
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    assert path.stat().st_size > 10_000
    return path


def _no_script_ran(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    assert driver.execute_script("return window.__pwned") is None
    assert driver.execute_script("return document.querySelectorAll('script, iframe, object, embed').length") == 0
    assert driver.execute_script(
        "return [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length"
    ) == 0
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    blocked = [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
    assert not blocked, f"injected content tried to run: {blocked}"


def test_comparison_report_renders_and_flips_open(browser, tmp_path):
    from selenium.webdriver.common.by import By

    res = ladder(hostile=True)
    comparison = compare(res)
    written = write_reports(res, comparison, tmp_path)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(written["report.html"], ARTIFACTS / "report-comparison.html")
    browser.get(written["report.html"].as_uri())

    verdict = browser.find_element(By.CSS_SELECTOR, "#verdict .verdict-line")
    assert verdict.is_displayed() and "undecided: no build is shown within 5 pts of f16" in verdict.text
    assert browser.find_element(By.ID, "disclosure").is_displayed()
    assert "model spills 2 layers to CPU" in browser.find_element(By.ID, "disclosure").text

    plots = browser.find_elements(By.CSS_SELECTOR, "img.plot")
    assert len(plots) == 2
    for img in plots:
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0
        assert img.size["width"] > 300 and img.size["height"] > 100

    cells = browser.find_elements(By.CSS_SELECTOR, "table.heatmap td.hm")
    assert cells and cells[0].size["width"] > 0

    flips = browser.find_elements(By.CSS_SELECTOR, "details.flip")
    assert len(flips) == sum(len(t.vs_reference.flips) for t in comparison.targets if t.vs_reference)
    hostile = next(f for f in flips if XSS_SCENARIO in f.find_element(By.TAG_NAME, "summary").text)
    pair = hostile.find_element(By.CSS_SELECTOR, ".pair")
    assert not pair.is_displayed()
    hostile.find_element(By.TAG_NAME, "summary").click()
    assert pair.is_displayed()
    sides = pair.find_elements(By.CSS_SELECTOR, ":scope > .traj")
    assert len(sides) == 2 and all(s.is_displayed() for s in sides)
    reference, build = (s.text for s in sides)
    assert "f16 (reference)" in reference and "get_weather" in reference and "temp_c" in reference
    # the build's side shows the hostile strings as plain text, and says where the score failed and why
    assert XSS_TOOL in build and XSS_ANSWER in build
    assert "wrong_tool" in build and f"expected get_weather, got {XSS_TOOL}" in build

    _no_script_ran(browser)
    browser.execute_script("arguments[0].scrollIntoView()", hostile)
    _screenshot(browser, "report-comparison.png")


def test_single_run_report_renders(browser, tmp_path):
    from selenium.webdriver.common.by import By

    res = results([
        record("qwen2.5-7b-q4_k_m", "pick_tool_0"), record("qwen2.5-7b-q4_k_m", "recall_0", steps="ok ok context_lost"),
        conversation("qwen2.5-7b-q4_k_m", XSS_SCENARIO, fail=Outcome.UNKNOWN_TOOL, tool=XSS_TOOL, answer=XSS_ANSWER),
    ])
    written = write_reports(res, summarize_run(res), tmp_path)
    browser.get(written["report.html"].as_uri())
    assert "qwen2.5-7b-q4_k_m: 33.3% (1/3) passed" in browser.find_element(By.ID, "verdict").text
    assert not browser.find_elements(By.ID, "flips")
    runs = browser.find_elements(By.CSS_SELECTOR, "#failed details.flip")
    assert len(runs) == 2
    for run in runs:
        run.find_element(By.TAG_NAME, "summary").click()
        assert run.find_element(By.CSS_SELECTOR, ".traj").is_displayed()
    _no_script_ran(browser)
    _screenshot(browser, "report-single.png")


def test_few_shot_tool_calls_are_visible_in_the_context(browser, tmp_path):
    """A scenario's few-shot exchanges are sent as real tool calls; the report shows them, not empty boxes."""
    from click.testing import CliRunner
    from selenium.webdriver.common.by import By

    from harness.cli import main
    from tests.fakeserver import FakeServer, text_reply

    scenario = Path(__file__).resolve().parents[1] / "scenarios" / "smoke" / "weather_email.yaml"
    with FakeServer(models=["m"]) as server:
        server.responder = lambda request: text_reply("I cannot look that up.")
        result = CliRunner().invoke(main, ["run", str(scenario), "--base-url", server.base_url, "--model", "m",
                                           "--out", str(tmp_path), "--no-preflight"])
    assert result.exit_code == 0, result.output
    browser.get((tmp_path / "report.html").as_uri())
    [run] = browser.find_elements(By.CSS_SELECTOR, "#failed details.flip")
    run.find_element(By.TAG_NAME, "summary").click()
    context = run.find_element(By.CSS_SELECTOR, "details.ctx")
    context.find_element(By.TAG_NAME, "summary").click()
    calls = context.find_elements(By.CSS_SELECTOR, ".msg.ctx .call")
    assert [c.find_element(By.CSS_SELECTOR, "code.tool").text for c in calls][:3] == ["get_weather", "send_email", "get_weather"]
    assert all(c.is_displayed() for c in calls)
    assert '"city": "Rome"' in calls[0].text and "bob@example.com" in calls[1].text
    # no message of the context is an empty box
    for message in context.find_elements(By.CSS_SELECTOR, ".msg.ctx"):
        role = message.find_element(By.CSS_SELECTOR, ".role").text
        assert message.text.strip() != role.strip(), f"empty {role} message in the context"
    _no_script_ran(browser)
    browser.execute_script("arguments[0].scrollIntoView()", context)
    _screenshot(browser, "report-few-shot.png")


def test_the_accuracy_table_fits_a_1400_px_window(browser, tmp_path):
    from selenium.webdriver.common.by import By

    res = ladder(epochs=3)  # every optional column: pass^k, noise, four builds
    written = write_reports(res, compare(res), tmp_path)
    browser.set_window_size(1400, 1000)
    browser.get(written["report.html"].as_uri())
    box = browser.find_element(By.CSS_SELECTOR, "#accuracy .scroll")
    assert "pass^k" in box.text and "McNemar" in box.text
    scroll, client = browser.execute_script("return [arguments[0].scrollWidth, arguments[0].clientWidth]", box)
    assert scroll <= client, f"the accuracy table is {scroll} px wide in a {client} px box"
