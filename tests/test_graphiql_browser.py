"""GraphiQL works offline: a real `jingtan serve` process, Chromium headless (the Debian package) driven
by Playwright; the page loads its assets from /graphiql-assets/, a query typed into the editor runs, and
no request leaves localhost (any other request is aborted and makes the test fail)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from jingtan_api.graphiql import ASSETS_DIR
from jingtan_api.testing import free_port, wait_until_healthy

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    try:
        import playwright.async_api  # noqa: F401  (a test dependency; checked here to skip with a reason)
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists() and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=900,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is missing and could not be installed (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture
def server(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINGTAN_")}
    env |= {"JINGTAN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'graphiql.db'}", "JINGTAN_LOG__LEVEL": "WARNING"}
    cli = [sys.executable, "-m", "jingtan_api.cli"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    process = subprocess.Popen(
        [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(process, port, describe=lambda: process.stderr.read().decode()[-2000:])
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_page_and_assets_are_served_from_the_package(server):
    page = httpx.get(f"{server}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "/graphiql-assets/graphiql.min.js" in page.text
    assert "unpkg.com" not in page.text and "https://" not in page.text.split("<script>")[0]
    for name in ("react.production.min.js", "react-dom.production.min.js", "graphiql.min.js", "graphiql.min.css"):
        asset = httpx.get(f"{server}/graphiql-assets/{name}")
        assert asset.status_code == 200 and asset.content == (ASSETS_DIR / name).read_bytes()
    for licence in ("graphiql.LICENSE", "react.LICENSE", "react-dom.LICENSE"):
        assert "MIT" in (ASSETS_DIR / licence).read_text(encoding="utf-8")
    assert httpx.get(f"{server}/graphiql-assets/../settings.py").status_code == 404


async def test_graphiql_runs_a_typed_query_without_leaving_localhost(server, chromium):
    from playwright.async_api import async_playwright  # deferred: optional test dependency, checked by chromium

    origin = urlsplit(server).netloc
    requests: list[str] = []
    foreign: list[str] = []

    async def guard(route):
        url = route.request.url
        requests.append(url)
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).netloc == origin:
            await route.continue_()
        else:
            foreign.append(url)
            await route.abort()

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            await context.route("**/*", guard)
            page = await context.new_page()
            console_errors: list[str] = []
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            await page.goto(f"{server}/graphql", wait_until="load")
            editor = page.locator(".graphiql-query-editor .CodeMirror").first
            await editor.wait_for(timeout=30_000)
            await editor.click()
            await page.keyboard.press("Control+A")
            await page.keyboard.press("Delete")
            # CodeMirror closes brackets itself and types over a closing one, so this yields the query as typed.
            await page.keyboard.type("{ offers(first: 5) { totalCount } }", delay=15)
            await page.keyboard.press("Escape")  # close the autocomplete list, if open
            typed = await page.evaluate(
                "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue()"
            )
            assert typed.split() == "{ offers(first: 5) { totalCount } }".split(), typed
            await page.locator("button.graphiql-execute-button").click()
            await page.wait_for_function(
                "() => (document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror?.getValue() || '')"
                ".includes('totalCount')",
                timeout=30_000,
            )
            result = await page.evaluate(
                "document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()"
            )
        finally:
            await browser.close()
    assert '"totalCount": 0' in result, result
    assert foreign == [], f"requests left localhost: {foreign}"
    assert any(u.endswith("/graphiql-assets/graphiql.min.js") for u in requests)
    assert sum(1 for u in requests if urlsplit(u).path == "/graphql") >= 2  # the page, introspection, the query
    assert not [e for e in console_errors if "Failed to load" in e], console_errors

