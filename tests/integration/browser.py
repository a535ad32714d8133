"""A real browser for the dashboard's tests: Playwright driving Debian's
chromium (Playwright cannot download its own browser here). The session setup
installs chromium with apt-get when it is missing (as root, once)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]


def ensure_chromium() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if path:
        return path
    if os.geteuid() != 0:
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium "
                    "(or run them as root, which installs it)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env,
                   timeout=1200, stdout=subprocess.DEVNULL)
    if not os.path.exists(CHROMIUM):
        pytest.fail("apt-get installed chromium but %s is missing" % CHROMIUM)
    return CHROMIUM


class Browser:
    """One chromium for the session; a context per identity (the identity
    header that `serve-headers` trusts on loopback, sent with every request)."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._profile = tempfile.mkdtemp(prefix="aperture-chromium-")
        self.browser = self._pw.chromium.launch(executable_path=ensure_chromium(), args=ARGS)

    def context(self, login: str | None, *, width: int = 1280, height: int = 900):
        headers = {"tailscale-user-login": login} if login else {}
        return self.browser.new_context(viewport={"width": width, "height": height},
                                        extra_http_headers=headers, locale="en-US",
                                        timezone_id="UTC")

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()
        shutil.rmtree(self._profile, ignore_errors=True)


class Page:
    """A page that records console errors and uncaught exceptions."""

    def __init__(self, context) -> None:
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.errors.append("dialog: " + d.message), d.dismiss()))

    def open(self, url: str, *, ready: str = "main:not(:has(.loading))"):
        resp = self.page.goto(url)
        self.page.wait_for_load_state("networkidle")
        self.page.wait_for_selector(ready, timeout=15000)
        return resp

    def texts(self, selector: str) -> list[str]:
        return [t.strip() for t in self.page.locator(selector).all_inner_texts()]

    def close(self) -> None:
        self.page.close()
