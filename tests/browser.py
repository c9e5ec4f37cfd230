"""A real headless Chromium for page tests: Debian's ``chromium`` driven through its own ``chromedriver``.

``make test`` installs both packages.  The driver's path is passed
explicitly, so Selenium Manager never runs and nothing is downloaded.
Selenium blocks: call it through ``asyncio.to_thread`` while the daemon
serves from the test's event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARGUMENTS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1000,800",
)
# How long a page may take before a test gives up (seconds).
PAGE_TIMEOUT = 30


def available() -> bool:
    """Whether Debian's chromium and chromium-driver are installed."""
    return CHROMIUM.is_file() and CHROMEDRIVER.is_file()


@contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile in ``profile``, quit afterwards."""
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(PAGE_TIMEOUT)
        yield driver
    finally:
        driver.quit()


def submit(driver: webdriver.Chrome, button: WebElement) -> None:
    """Click a form's button (or a link) and wait until the answer has replaced the page (the URL may stay the
    same), so that nothing is read from the page that was left."""
    button.click()
    WebDriverWait(driver, PAGE_TIMEOUT).until(_gone(button))
    WebDriverWait(driver, PAGE_TIMEOUT).until(
        lambda current: current.execute_script("return document.readyState") == "complete")


def _gone(element: WebElement) -> Callable[[webdriver.Chrome], bool]:
    """True once ``element`` left the document. Chromium sometimes says so with a plain WebDriverException
    ("Node with given id does not belong to the document") instead of a stale-element one."""
    def check(_driver: webdriver.Chrome) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if "does not belong to the document" in str(error):
                return True
            raise
        return False
    return check
