"""JupyterLab as the lab starts it: settings a newcomer should not have to change.

``write_overrides()`` puts ``overrides.json`` in the environment's JupyterLab
settings folder (``<prefix>/share/jupyter/lab/settings``), which JupyterLab
reads as the default of each setting; a learner's own choices still win. The
lab turns off the news and update pop-ups (they ask, on first start, whether
to fetch news from the internet: a question about JupyterLab, not about the
course, and a network request from a classroom machine).

``write_page_config()`` disables the jupysql JupyterLab plugin (installed because
jupysql requires it): in JupyterLab 4.6 it throws ``TypeError: Cannot read
properties of undefined (reading 'toolbar')`` from its settings handler at
start-up (seen in the browser test's console), and no notebook of the lab needs
what it adds (SQL highlighting and a format button for ``%%sql`` cells).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


DISABLED_EXTENSIONS = {"jupysql-plugin": True}


def _merge_json(path: Path, sections: dict[str, dict]) -> Path:
    """Merge ``sections`` into the JSON object at ``path`` (kept: what others wrote there)."""
    current: dict = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except ValueError:
            current = {}
    for name, values in sections.items():
        current.setdefault(name, {}).update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2) + "\n")
    return path


def settings_dir(prefix: str | None = None) -> Path:
    return Path(prefix or sys.prefix) / "share" / "jupyter" / "lab" / "settings"


def write_overrides(prefix: str | None = None) -> Path:
    """Write (or merge into) overrides.json and return its path."""
    return _merge_json(settings_dir(prefix) / "overrides.json", OVERRIDES)


def write_page_config(prefix: str | None = None) -> Path:
    """Disable the extensions the lab does not want, in the environment's labconfig."""
    path = Path(prefix or sys.prefix) / "etc" / "jupyter" / "labconfig" / "page_config.json"
    return _merge_json(path, {"disabledExtensions": DISABLED_EXTENSIONS})


def configure(prefix: str | None = None) -> None:
    """Everything ``make lab`` sets up in JupyterLab before it starts."""
    write_overrides(prefix)
    write_page_config(prefix)
