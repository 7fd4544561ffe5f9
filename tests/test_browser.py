"""The dashboard in a real browser: ``streamlit run`` and the API as subprocesses, Debian's
Chromium driven by Playwright. Every page is visited and timed, the What-if form is submitted,
a real CSV is uploaded on the batch page, and a screenshot of each page lands in
``tests/artifacts/`` with the load times (``page_load_times.json``).

Only 127.0.0.1 is reached: any other request is aborted and fails the test.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.servers import free_port, server
from tests.test_app import UPLOAD, api_process

pytestmark = [pytest.mark.browser, pytest.mark.slow]


ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "app" / "streamlit_app.py"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
TIMEOUT_MS = 60_000
# url path, page title, what shows that the page is there
PAGES: tuple[tuple[str, str, str], ...] = (
    ("", "Road accident severity", '[data-testid="stMetric"]'),
    ("evaluation", "Model evaluation", ".js-plotly-plot"),
    ("what-if", "What-if", '[data-testid="stForm"]'),
    ("batch", "Batch scoring", '[data-testid="stFileUploader"]'),
)
SCATTERGEO_DRAWN = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).some(
    (el) => (el.data || []).some((t) => t.type === 'scattergeo')
        && el.querySelectorAll('.scattergeo .point').length > 0
        && el.querySelector('.geolayer .land path') !== null)"""


@dataclass
class Browser:
    """One Chromium page on the dashboard, and every request that tried to leave 127.0.0.1."""

    page: Any
    base: str
    blocked: list[str] = field(default_factory=list)
    load_times: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def dashboard(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    logs = tmp_path_factory.mktemp("browser")
    with api_process(registry, logs / "api.log") as api_url:
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(MAIN),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ]
        url = f"http://127.0.0.1:{port}"
        with server(cmd, f"{url}/_stcore/health", env={"API_URL": api_url}, cwd=ROOT, log=logs / "streamlit.log"):
            yield url


@pytest.fixture(scope="module")
def browser(dashboard: str) -> Iterator[Browser]:
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    from playwright.sync_api import Route, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB")
            context.set_default_timeout(TIMEOUT_MS)
            session = Browser(page=None, base=dashboard)

            def only_local(route: Route) -> None:
                url = route.request.url
                if url.startswith(("data:", "blob:")) or urlparse(url).hostname in LOCAL_HOSTS:
                    route.continue_()
                else:
                    session.blocked.append(url)
                    route.abort()

            context.route("**/*", only_local)
            session.page = context.new_page()
            yield session
        finally:
            chromium.close()


def screenshot(page: Any, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1440, "height": max(900, int(height))})
    page.wait_for_timeout(700)  # plotly redraws on resize
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1440, "height": 900})
    return path


def open_page(session: Browser, path: str, title: str, ready: str) -> float:
    """Navigate to a page and wait for its main element; returns the seconds it took."""
    page = session.page
    start = time.perf_counter()
    page.goto(f"{session.base}/{path}")
    page.get_by_role("heading", name=title, exact=True).wait_for(state="visible")
    page.locator(ready).first.wait_for(state="visible")
    return time.perf_counter() - start


def test_every_page_loads_and_is_timed(browser: Browser, capsys: pytest.CaptureFixture[str]) -> None:
    page = browser.page
    for path, title, ready in PAGES:
        name = path or "overview"
        browser.load_times[name] = round(open_page(browser, path, title, ready), 3)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.get_by_text("API ready").first.is_visible()
        if name == "evaluation":
            page.locator(".js-plotly-plot").nth(4).wait_for(state="visible")  # matrix, curves, importance
        screenshot(page, name)
    # Once more, warm: the first visit also imported the page modules into the server process.
    warm = {
        f"{path or 'overview'} (warm)": round(open_page(browser, path, title, ready), 3) for path, title, ready in PAGES
    }
    times = {**browser.load_times, **warm}
    (ARTIFACTS / "page_load_times.json").write_text(json.dumps(times, indent=2) + "\n", encoding="utf-8")
    with capsys.disabled():
        print("\npage load times (s):", json.dumps(times, indent=2))
    assert all(seconds < 30 for seconds in times.values()), times


def test_what_if_form_in_the_browser(browser: Browser) -> None:
    page = browser.page
    open_page(browser, "what-if", "What-if", '[data-testid="stForm"]')
    page.get_by_role("tab", name="People").click()
    pedestrians = page.get_by_label("Pedestrians", exact=True)
    pedestrians.fill("1")
    page.get_by_role("tab", name="Conditions").click()
    page.get_by_label("Scenario name").fill("Pedestrian at 17:00")
    page.get_by_role("button", name="Predict severity").click()
    page.get_by_role("heading", name="Prediction: Pedestrian at 17:00").wait_for(state="visible")
    verdict = page.get_by_text("a probability of", exact=False).first
    verdict.wait_for(state="visible")
    assert "%" in verdict.inner_text()
    page.get_by_role("button", name="Add this scenario to the comparison").click()
    page.get_by_role("heading", name="Compare scenarios (1 of 5)").wait_for(state="visible")
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).some("
        "(el) => (el.data || []).some((t) => t.type === 'indicator'))"
    )
    screenshot(page, "what-if-result")


def test_batch_upload_in_the_browser(browser: Browser) -> None:
    page = browser.page
    open_page(browser, "batch", "Batch scoring", '[data-testid="stFileUploader"]')
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(UPLOAD))
    page.get_by_role("heading", name=f"Results for {UPLOAD.name}").wait_for(state="visible")
    page.locator('[data-testid="stDataFrame"]').first.wait_for(state="visible")
    page.wait_for_function(SCATTERGEO_DRAWN)  # points and the land outline: the local topojson loaded
    assert page.get_by_text("Against the known outcomes").is_visible()
    assert page.get_by_role("button", name="Download Parquet").is_visible()
    assert page.get_by_role("button", name="Download CSV").is_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    target = ARTIFACTS / "batch-scored.csv"
    download.value.save_as(str(target))
    assert target.read_text(encoding="utf-8").splitlines()[0].startswith("id,")
    screenshot(page, "batch")


def test_nothing_left_127_0_0_1(browser: Browser) -> None:
    # Runs last: every page, the map outlines and the downloads were served locally.
    assert browser.page.url.startswith(browser.base)
    assert not browser.blocked, f"requests outside 127.0.0.1: {browser.blocked}"
