"""JupyterLab in a real browser: what a learner sees after Run All.

Starts JupyterLab on a free port with a token, over a scratch copy of two
notebooks (autosave must never write outputs into the repository), opens each in
headless Chromium driven by Playwright, runs *Run All Cells* from the menu, waits
until every cell has run and the kernel is idle, and asserts from the page:

* the learner copy of 00 reaches its last cell, each check says "not attempted yet"
  (said once), and nothing else fails;
* a solution with plots (06) renders its plots as images and passes every check;
* no cell shows an error it should not, no widget failed to render, and no
  JupyterLab extension failed to activate (the browser console is read);
* no news pop-up greets the learner.

Screenshots of each notebook go to ``tests/screenshots/`` (gitignored).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from labs.course.checking import checks_of
from labs.runtime.config import NOTEBOOKS_DIR, SOLUTIONS_DIR

from .browser import find_chromium, why_no_browser

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

SCREENSHOTS = Path(__file__).parent / "screenshots"
LEARNER = "00_start_here.ipynb"
WITH_PLOTS = "06_upserts.ipynb"
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in the front tab

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the pinned requirements install it
    sync_playwright = None


@pytest.fixture(scope="module")
def chromium() -> str:
    if sync_playwright is None:
        pytest.skip("browser test skipped: the playwright package is missing (make install)")
    binary = find_chromium()
    if binary is None:
        pytest.skip(f"browser test skipped: {why_no_browser()}")
    return binary


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server over a scratch folder: (base URL, token, folder)."""
    root = tmp_path_factory.mktemp("lab-root")
    shutil.copy(NOTEBOOKS_DIR / LEARNER, root / LEARNER)
    shutil.copy(SOLUTIONS_DIR / WITH_PLOTS, root / WITH_PLOTS)
    settings = tmp_path_factory.mktemp("lab-settings")
    # every cell in the page (JupyterLab 4 renders only the visible ones by default)
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    from labs.runtime.jupyterlab import configure

    configure()  # what `make lab` does: no news pop-up, no broken plugin
    with socket.socket() as probe:  # a free port from the kernel, not PostgreSQL's range
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = secrets.token_hex(16)
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path_factory.mktemp("lab-workspaces")))
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
           "--ip=127.0.0.1", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
           "--ServerApp.port_retries=0"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root.parent / "jupyterlab.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("JupyterLab did not start:\n"
                                + (root.parent / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, token, root
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_for_kernel(base: str, token: str, name: str, timeout: float = 240) -> None:
    """Until the notebook's kernel has started and is idle (the page shows idle earlier)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as reply:
            sessions = json.load(reply)
        if any(s.get("path", "").endswith(name) and s.get("kernel", {}).get("execution_state")
               == "idle" for s in sessions):
            return
        time.sleep(0.5)
    pytest.fail(f"the kernel of {name} did not start in {timeout:.0f} s")


def _run_all(page, base: str, token: str, name: str, timeout: float = 420) -> None:
    """Open a notebook, wait for its kernel, Run All from the menu, wait for the last cell."""
    page.goto(f"{base}/lab/tree/{name}?token={token}")
    page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-CodeCell", timeout=60_000)
    _wait_for_kernel(base, token, name)
    deadline = time.monotonic() + timeout
    for attempt in range(3):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
        # a loaded machine may take the click before the notebook's commands are ready:
        # Run All has started when any prompt has changed from "[ ]:"
        started = time.monotonic()
        while time.monotonic() - started < 60:
            prompts = page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt").all_inner_texts()
            if any(re.search(r"\[(\*|\d+)\]", p) for p in prompts):
                break
            time.sleep(1)
        else:
            continue
        break
    while True:
        prompts = page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt").all_inner_texts()
        busy = [p for p in prompts if "*" in p]
        never = [p for p in prompts if re.fullmatch(r"\[\s*\]:?", p.strip())]
        idle = page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count()
        if prompts and not busy and not never and idle:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"Run All of {name} did not finish in {timeout:.0f} s: "
                        f"{len(busy)} cell(s) running, {len(never)} never run")
        time.sleep(1)


def _saved(page, root: Path, name: str) -> nbformat.NotebookNode:
    """Save through the UI and read the notebook back: each output with its type."""
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        nb = nbformat.read(root / name, as_version=4)
        if any(c.get("outputs") for c in nb.cells if c.cell_type == "code"):
            return nb
        time.sleep(0.5)
    pytest.fail(f"{name} was not saved from the browser")


def _errors(nb: nbformat.NotebookNode) -> list[tuple[int, str, str]]:
    return [(i, o["ename"], "\n".join(o.get("traceback", [])))
            for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if o["output_type"] == "error"]


def _page_problems(page, console: list[str]) -> list[str]:
    problems = [m for m in console if re.search(
        r"failed to activate|Failed to load|Error displaying widget|Uncaught", m, re.I)]
    text = page.locator(PANEL).inner_text()
    if "Error displaying widget" in text or "Loading widget" in text:
        problems.append("a widget did not render")
    if page.locator(".jp-toast-container, .Toastify__toast").filter(
            has_text=re.compile("news|update", re.I)).count():
        problems.append("a news or update pop-up is showing")
    return problems


def test_learner_and_solution_notebooks_in_a_real_browser(chromium, jupyterlab):
    base, token, root = jupyterlab
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        try:
            # --- the learner copy of 00: Run All reaches the end, every check unsolved
            _run_all(page, base, token, LEARNER)
            page.screenshot(path=str(SCREENSHOTS / "00_learner_run_all.png"), full_page=True)
            text = page.locator(PANEL).inner_text()
            ids = checks_of("start_here")
            for check_id in ids:
                cell = page.locator(f"{PANEL} .jp-CodeCell").filter(has_text=f'check("{check_id}"')
                said = cell.locator(".jp-OutputArea").inner_text()
                assert said.count(f"✗ {check_id}: not attempted yet") == 1, (
                    f"{check_id}'s check cell does not say 'not attempted yet' once: {said!r}")
            assert f"0/{len(ids)} checks passed" in text, "check_all's summary is not on the page"
            assert not re.search(r"^\(\d+, \d+\)$", text, re.M), "a stray tuple under check_all"
            nb = _saved(page, root, LEARNER)
            last = [c for c in nb.cells if c.cell_type == "code"][-1]
            assert last.get("execution_count"), "Run All did not reach the last cell"
            for index, ename, trace in _errors(nb):
                assert ename == "NotAttempted", f"cell {index} shows {ename}: {trace[:300]}"
            assert not _page_problems(page, console), _page_problems(page, console)

            # --- a solution with plots: images rendered, every check passes, no error
            _run_all(page, base, token, WITH_PLOTS)
            page.screenshot(path=str(SCREENSHOTS / "06_solution_run_all.png"), full_page=True)
            images = page.locator(f"{PANEL} .jp-RenderedImage img")
            assert images.count() >= 1, "no plot was rendered as an image"
            widths = images.evaluate_all("els => els.map(e => e.naturalWidth)")
            assert all(w > 0 for w in widths), f"a plot image is broken (widths {widths})"
            text = page.locator(PANEL).inner_text()
            for check_id in checks_of("upserts"):
                assert f"✓ {check_id}" in text, f"{check_id} does not pass in the browser"
            assert "✗" not in text, "a check failed in the solution notebook"
            nb = _saved(page, root, WITH_PLOTS)
            assert not _errors(nb), f"errors in the solution: {_errors(nb)[:2]}"
            assert not _page_problems(page, console), _page_problems(page, console)
        finally:
            browser.close()
