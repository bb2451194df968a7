"""Real-browser tests: the playground served by JupyterLab, and the static docs site, in Debian's headless chromium.

Chromium is driven through the `playwright` package with `executable_path` set to the system browser (never a
downloaded one). `make browser` installs both. Without them these tests skip with a message saying so, except under
CI (the environment variable CI is "true"), where they fail: CI must not pass without a real browser.
Screenshots go to `$TTTLAB_SCREENSHOTS` (default: pytest's tmp folder).
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import NoReturn
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("TTTLAB_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow
IN_CI = os.environ.get("CI") == "true"


def missing(reason: str) -> NoReturn:
    "Skip a test that lacks a tool it needs; under CI fail it instead."
    if IN_CI: pytest.fail(f"{reason} (CI=true: the browser tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        missing(f"chromium is not installed at {CHROMIUM}: run `make browser` (apt-get install chromium) to run this test")
    try: from playwright.sync_api import sync_playwright
    except ImportError: missing("the playwright package is not installed: run `make browser` (pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def shots(tmp_path: Path) -> Path:
    d = Path(os.environ.get("TTTLAB_SCREENSHOTS", tmp_path))
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---------------------------------------------------------------- the docs site

def test_docs_site_renders_and_links_resolve(browser, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py"), "--nbs", str(ROOT / "nbs"), "--out", str(site)],
                   check=True, cwd=ROOT, timeout=600)
    pages = sorted(site.glob("*.html"))
    assert len(pages) >= 3 and (site / "index.html").exists()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.route(re.compile(r"^https?://"), lambda route: route.abort())  # offline: only the site's own files
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
    broken: list[str] = []
    for p in pages:
        page.goto(p.as_uri())
        page.wait_for_load_state("load")
        assert page.locator("main h1").count() >= 1, f"{p.name} has no title"
        plots = page.locator(".tttlab-plot").count()
        assert page.locator(".tttlab-plot .main-svg").count() >= plots, f"{p.name}: a plotly figure did not draw"
        assert page.locator("nav.sidebar a").count() >= len(pages), f"{p.name}: sidebar incomplete"
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))"):
            u = urlparse(href)
            if u.scheme in ("http", "https", "mailto") or not (u.path or u.fragment): continue
            target = (p.parent / unquote(u.path)) if u.path else p
            if not target.exists(): broken.append(f"{p.name} -> {href}"); continue
            if u.fragment and target.suffix == ".html" and f'id="{u.fragment}"' not in target.read_text() \
                    and f"id='{u.fragment}'" not in target.read_text():
                broken.append(f"{p.name} -> {href} (no such anchor)")
        for src in page.eval_on_selector_all("img[src]", "els => els.map(e => e.getAttribute('src'))"):
            if not urlparse(src).scheme and not (p.parent / unquote(src)).exists(): broken.append(f"{p.name} -> img {src}")
    models = next((p for p in pages if p.name == "models.html"), pages[0])
    page.goto(models.as_uri())
    page.screenshot(path=str(shots(tmp_path) / "docs_models.png"), full_page=False)
    page.close()
    assert not errors, errors
    assert not broken, broken


# ---------------------------------------------------------------- the playground in JupyterLab

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MODEL = os.environ.get("TTTLAB_PLAYGROUND_MODEL", "tiny")  # the default model makes a screenshot worth showing
NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "id": "pg", "metadata": {}, "outputs": [],
                       "source": "from tttlab.app import Playground\nfrom tttlab.models import LearningConfig\n"
                                 + ("Playground('tiny', config=LearningConfig(chunk_size=512), max_tokens=8)" if MODEL == "tiny"
                                    else f"Playground({MODEL!r})")}],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture()
def jupyterlab(tmp_path):
    "A JupyterLab server on localhost serving a notebook that shows the playground; yields its URL."
    if shutil.which("jupyter") is None: missing("jupyterlab is not installed (pip install jupyterlab)")
    root, settings = tmp_path / "lab", tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    root.mkdir(); settings.mkdir(parents=True)
    (root / "playground.ipynb").write_text(json.dumps(NOTEBOOK))
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = free_port(), "tttlab-test"
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
                             "--LabApp.extension_manager=readonly"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError: time.sleep(0.5)
        else: pytest.fail("JupyterLab did not start: " + (tmp_path / "lab.log").read_text()[-2000:])
        yield f"{base}/lab/tree/playground.ipynb?token={token}"
    finally:
        proc.terminate()
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()


def test_playground_in_jupyterlab(browser, jupyterlab, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 2000})
    try: drive_playground(page, jupyterlab, shots(tmp_path))
    except Exception:
        page.screenshot(path=str(shots(tmp_path) / "playground_failure.png"), full_page=True)
        raise
    finally: page.close()


def drive_playground(page, url: str, out: Path):
    "Run the notebook's cell, upload the sample, learn, ask, screenshot, reset."
    from tttlab.document import sample_pdf_path, sample_questions
    page.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), lambda route: route.abort())  # nothing leaves the machine
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)  # the kernel is connected
    for _ in range(3):  # a run sent while the kernel is still handshaking can be dropped: retry
        page.get_by_text("Run", exact=True).first.click()
        page.get_by_text("Run All Cells", exact=True).click()
        try:
            page.get_by_role("button", name="Use the sample").wait_for(timeout=60_000)
            break
        except Exception: continue
    page.get_by_role("button", name="Use the sample").wait_for(timeout=60_000)

    with page.expect_file_chooser() as chooser: page.get_by_role("button", name=re.compile("Upload PDF")).click()
    chooser.value.set_files(str(sample_pdf_path()))
    page.get_by_text(re.compile(r"chunk\(s\) of at most \d+")).wait_for(timeout=120_000)
    page.get_by_role("button", name="Start learning").click()
    page.get_by_text("Context cleared").wait_for(timeout=600_000)
    assert page.get_by_text(re.compile(r"chunk (\d+)/\1 · loss")).count() == 1, "the progress label shows the last chunk"
    assert page.locator(".jp-OutputArea .js-plotly-plot").count() == 1, "the loss curve is drawn"

    q = sample_questions()[0].question
    page.get_by_placeholder(re.compile("^Ask a question")).fill(q)
    page.get_by_role("button", name="Ask").click()
    page.get_by_text("After learning (TTT)").first.wait_for(timeout=120_000)
    assert page.get_by_text("Base model").count() >= 1
    page.get_by_placeholder(re.compile("^Ask a question")).fill(sample_questions()[1].cloze)
    page.get_by_role("button", name="Ask").click()
    page.get_by_text("Earlier questions").wait_for(timeout=120_000)  # the first answer moved to the history
    assert page.locator(".tttlab-msg-error").count() == 0
    page.screenshot(path=str(out / "playground_lab.png"))
    page.locator(".jp-OutputArea-output").first.screenshot(path=str(out / "playground.png"))

    page.locator("button.widget-button[title=Reset]").click()
    page.get_by_text("Reset: upload a new document.").wait_for(timeout=30_000)
    assert page.get_by_text("After learning (TTT)").count() == 0
