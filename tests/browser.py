"""A real browser for the JupyterLab test: Debian's chromium, driven by Playwright.

Playwright's own browser download cannot be used here (no access to its CDN), so the
test drives the system's Chromium through ``executable_path``. ``make test`` runs
``python -m tests.browser`` first: it finds Chromium, or installs Debian's package
when it runs as root with apt, and says in one line what it did. A machine that
cannot have a browser gets one clear skip line from the test, never a silent pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    explicit = os.environ.get("LAB_CHROMIUM")
    if explicit and os.access(explicit, os.X_OK):
        return explicit
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def why_no_browser() -> str:
    """Why this machine has no Chromium, and the one thing to do about it."""
    if os.geteuid() != 0:
        return ("no Chromium found and not root to install it: `sudo apt-get install chromium` "
                "(or set LAB_CHROMIUM to a Chromium/Chrome binary), then run the tests again")
    if not shutil.which("apt-get"):
        return ("no Chromium found and no apt-get to install it: install Chromium or Chrome and "
                "set LAB_CHROMIUM to its binary")
    return "no Chromium found, and `apt-get install -y chromium` did not provide one"


def ensure_chromium(quiet: bool = False) -> str | None:
    """The Chromium binary, installing Debian's package first when possible."""
    found = find_chromium()
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    if not quiet:
        print("Installing Debian's chromium for the browser test (once, about a minute)...",
              flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, env=env, capture_output=True, text=True)
    if done.returncode != 0:  # a stale package list: update once, then try again
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)
    return find_chromium()


if __name__ == "__main__":
    binary = ensure_chromium()
    if binary:
        print(f"Browser test: {binary}")
    else:
        print(f"Browser test will be skipped: {why_no_browser()}")
    sys.exit(0)
