"""The self-study site: every solution executed at a scale, rendered with its outputs.

``python -m labs site [--scale S] [--only NN,...]`` (``make site``) runs each
``solutions/NN_topic.ipynb`` in a fresh kernel, as a learner's Run All would, and
renders it with nbconvert's JupyterLab template into ``site/``: ``index.html`` is the
course map (what each challenge teaches, what it needs first, its time and its key
picture) and each challenge gets a page with a table of contents and a line saying the
scale, PostgreSQL version and date it was executed at. ``site/manifest.json`` records
the same for each page, with the cells that failed and the checks that did not pass.

The committed solutions stay without volatile outputs; the site is where outputs live.
Kernels run with ``LAB_DB_NAMESPACE`` + ``site_`` so a build never clones into the
databases of a test run or a learner, and ``LAB_PROGRESS=off`` so it records no progress.
The challenge databases of the build are dropped after each notebook unless ``keep``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import html
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from ..runtime.config import ROOT, SOLUTIONS_DIR, Scale, current_scale, namespace
from .catalogue import BY_TOPIC, COURSE, LEVELS, Challenge, _duration

SITE_DIR = ROOT / "site"
MANIFEST = "manifest.json"
# a cell that runs past this is stuck, not slow (the grader's per-cell limits, by scale)
CELL_TIMEOUT = {"tiny": 120, "small": 600, "production": 3600}
IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")

# nbconvert's JupyterLab template, extended: no scripts fetched from a CDN (the pages
# open offline and nothing in them needs require.js, MathJax or widgets), a header with
# the course map link, the execution stamp and a table of contents, and error outputs
# marked so that a check can find them.
TEMPLATE = r"""
{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block extra_css %}
<style type="text/css">
  body.jp-Notebook { max-width: 1100px; margin: 0 auto; }
  .lab-site-bar { font-family: var(--jp-ui-font-family); font-size: 14px;
                  padding: 12px 16px; border-bottom: 1px solid var(--jp-border-color2); }
  .lab-site-bar a { margin-right: 1.2em; }
  .lab-site-stamp { color: var(--jp-ui-font-color2); margin-top: 6px; }
  nav.lab-site-toc { font-family: var(--jp-ui-font-family); font-size: 14px;
                     padding: 8px 16px 12px; border-bottom: 1px solid var(--jp-border-color2); }
  nav.lab-site-toc ol { list-style: none; margin: 4px 0; padding-left: 0; }
  .lab-site-bar a, nav.lab-site-toc a, table.lab-site-map a {
    color: var(--jp-content-link-color); text-decoration: none; }
  nav.lab-site-toc li.lab-toc-2 { padding-left: 1.2em; }
  nav.lab-site-toc li.lab-toc-3 { padding-left: 2.4em; }
  @media (min-width: 1500px) {
    nav.lab-site-toc { position: fixed; top: 0; left: 0; width: calc((100vw - 1140px) / 2);
                       max-height: 100vh; overflow-y: auto; border-bottom: none; }
  }
  table.lab-site-map td { vertical-align: top; }
  table.lab-site-map img { max-width: 240px; max-height: 160px; }
  .lab-site-error { border-left: 4px solid #d32f2f; }
</style>
{% endblock extra_css %}
{%- block body_header -%}
{{ super() }}
{%- set site = resources.site -%}
<header class="lab-site-bar">
  {%- if site.kind == 'page' %}
  <a href="index.html">&larr; Course map</a>
  {%- if site.previous %}<a href="{{ site.previous.href }}">&lsaquo; {{ site.previous.label | e }}</a>{% endif %}
  {%- if site.next %}<a href="{{ site.next.href }}">{{ site.next.label | e }} &rsaquo;</a>{% endif %}
  {%- endif %}
  <div class="lab-site-stamp">{{ site.stamp | e }}</div>
</header>
{%- if site.toc %}
<nav class="lab-site-toc" aria-label="Contents"><strong>Contents</strong>
<ol>
{%- for entry in site.toc %}
  <li class="lab-toc-{{ entry.level }}"><a href="#{{ entry.anchor }}">{{ entry.text | e }}</a></li>
{%- endfor %}
</ol></nav>
{%- endif %}
{%- endblock body_header -%}
{% block error -%}
<div class="lab-site-error">{{ super() }}</div>
{%- endblock error %}
"""


@dataclass
class Page:
    """One executed challenge, as the manifest records it."""

    number: str
    topic: str
    title: str
    href: str
    scale: str
    server: str
    executed_at: str
    seconds: float
    errors: list[str] = field(default_factory=list)  # "cell N: Name: value"
    failed_checks: list[str] = field(default_factory=list)
    key_picture: str | None = None  # a data: URI, the first image the notebook shows


@dataclass
class Build:
    out: Path
    pages: list[Page]

    @property
    def problems(self) -> list[str]:
        lines = []
        for page in self.pages:
            lines += [f"{page.number}_{page.topic}: {e}" for e in page.errors]
            lines += [f"{page.number}_{page.topic}: check {c} did not pass"
                      for c in page.failed_checks]
        return lines


def select(only: str | Sequence[str] | None) -> list[Challenge]:
    """The challenges named by ``only`` ("00,07", "start_here", ...), else all of them."""
    if not only:
        return list(COURSE)
    names = only.split(",") if isinstance(only, str) else list(only)
    chosen = []
    for name in (n.strip() for n in names if n.strip()):
        match = [c for c in COURSE if name in (c.number, c.topic, f"{c.number}_{c.topic}")]
        if not match:
            raise ValueError(f"there is no challenge {name!r}; the course has "
                             + ", ".join(c.number for c in COURSE))
        chosen += [c for c in match if c not in chosen]
    return chosen


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set variables for the kernels started inside (they inherit this process's env)."""
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def execute(path: Path, timeout: int):
    """Run a notebook in a fresh kernel from solutions/; cell errors are kept, not raised."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # a stuck cell is interrupted (its output says so) and the rest still runs
    client = NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name="python3",
                            interrupt_on_timeout=True,
                            resources={"metadata": {"path": str(SOLUTIONS_DIR)}})
    try:
        client.execute()
    except Exception as exc:  # a dead kernel: the page shows what ran, the build says why
        nb.metadata["lab_site_failure"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    return nb


def cell_errors(nb) -> list[str]:
    errors = [f"cell {index}: {output.get('ename')}: {output.get('evalue')}"
              for index, cell in enumerate(nb.cells)
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    failure = nb.metadata.pop("lab_site_failure", None)
    return errors + ([f"the run stopped: {failure}"] if failure else [])


def key_picture(nb) -> str | None:
    """The first image the executed notebook shows, as a data: URI."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            for mime in IMAGE_TYPES:
                if data.get(mime):
                    payload = data[mime]
                    if isinstance(payload, list):
                        payload = "".join(payload)
                    if mime == "image/svg+xml":
                        payload = base64.b64encode(payload.encode()).decode()
                    return f"data:{mime};base64,{payload.strip()}"
    return None


def table_of_contents(nb, deepest: int = 3) -> list[dict]:
    """Headings of the markdown cells with the ids nbconvert gives them (the title left out)."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    entries = []
    for cell in nb.cells:
        if cell.cell_type != "markdown" or "#" not in cell.source:
            continue
        rendered = markdown2html_mistune(cell.source)
        for level, anchor, inner in re.findall(
                r'<h([1-6])[^>]*\bid="([^"]+)"[^>]*>(.*?)</h\1>', rendered, flags=re.S):
            text = html.unescape(re.sub(r"<[^>]+>", "", inner)).rstrip("¶").strip()
            entries.append({"level": int(level), "anchor": anchor, "text": text})
    if entries and entries[0]["level"] == 1:
        entries = entries[1:]  # the notebook's own title
    return [e for e in entries if e["level"] <= deepest]


def _exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", template_file="lab_site.html.j2",
                        extra_loaders=[DictLoader({"lab_site.html.j2": TEMPLATE})],
                        embed_images=True)


def render(nb, title: str, site: dict) -> str:
    nb.metadata["title"] = title
    body, _ = _exporter().from_notebook_node(nb, resources={"site": site})
    return body


def _scale_words(scale: Scale) -> str:
    return (f"{scale.name} scale ({scale.customers:,} customers, {scale.orders:,} orders, "
            f"{scale.order_items:,} order items, {scale.users:,} users)")


def _server_words(version: int) -> str:
    return f"PostgreSQL {version // 10000}.{version % 10000}"


def _load_manifest(out: Path) -> dict[str, Page]:
    try:
        data = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    pages = {}
    for entry in data.get("pages", []):
        try:
            page = Page(**entry)
        except TypeError:
            continue
        if (out / page.href).exists():
            pages[page.topic] = page
    return pages


def build(scale: str | None = None, only: str | Sequence[str] | None = None,
          out: str | Path | None = None, progress: bool = True, keep: bool = False,
          timeout: int | None = None) -> Build:
    """Execute and render the chosen solutions into ``out``; pages already there stay."""
    from tqdm import tqdm

    from ..data.dataset import ensure_template
    from ..runtime.server import ensure_server
    from .challenge import drop

    chosen_scale = current_scale(scale)
    challenges = select(only)
    out = Path(out or SITE_DIR)
    out.mkdir(parents=True, exist_ok=True)
    srv = ensure_server(verbose=False)
    ensure_template(srv, chosen_scale, build_if_missing=True)
    pages = _load_manifest(out)
    timeout = timeout or CELL_TIMEOUT.get(chosen_scale.name, CELL_TIMEOUT["production"])
    site_namespace = namespace() + "site_"
    built: list[tuple[Page, object]] = []
    bar = tqdm(challenges, desc="site", unit="notebook", disable=not progress)
    for challenge in bar:
        name = f"{challenge.number}_{challenge.topic}"
        bar.set_postfix_str(name)
        with tempfile.TemporaryDirectory(prefix="lab-site-") as tmp, _environment(
                LAB_SCALE=chosen_scale.name, LAB_DB_NAMESPACE=site_namespace,
                LAB_PROGRESS="off", PLOOMBER_STATS_ENABLED="false",
                LAB_RESULTS_FILE=str(Path(tmp) / "results.jsonl")):
            started = time.monotonic()
            executed_at = dt.datetime.now(dt.timezone.utc)
            nb = execute(SOLUTIONS_DIR / f"{name}.ipynb", timeout)
            seconds = time.monotonic() - started
            results = Path(os.environ["LAB_RESULTS_FILE"])
            verdicts = [json.loads(line) for line in results.read_text().splitlines()
                        if line.strip()] if results.exists() else []
            if not keep:
                drop(challenge.topic)
        page = Page(challenge.number, challenge.topic, challenge.title, f"{name}.html",
                    chosen_scale.name, _server_words(srv.version),
                    executed_at.strftime("%Y-%m-%d %H:%M UTC"), round(seconds, 1),
                    cell_errors(nb), [v["check_id"] for v in verdicts if not v.get("passed")],
                    key_picture(nb))
        pages[challenge.topic] = page
        built.append((page, nb))
    # pages are rendered after all runs so that each one links its built neighbours
    ordered = [pages[c.topic] for c in COURSE if c.topic in pages]
    for page, nb in built:
        position = ordered.index(page)
        site = {"kind": "page", "toc": table_of_contents(nb),
                "previous": _neighbour(ordered[position - 1] if position else None),
                "next": _neighbour(ordered[position + 1] if position + 1 < len(ordered)
                                   else None),
                "stamp": (f"Executed at {_scale_words(chosen_scale)} on {page.server}, "
                          f"{page.executed_at}, in {page.seconds:.0f} s.")}
        (out / page.href).write_text(render(nb, f"{page.number} · {page.title}", site))
    (out / "index.html").write_text(render_index(ordered))
    (out / MANIFEST).write_text(json.dumps({"pages": [asdict(p) for p in ordered]}, indent=1))
    return Build(out, [page for page, _ in built])


def _neighbour(page: Page | None) -> dict | None:
    return page and {"href": page.href, "label": f"{page.number} {page.title}"}


def render_index(pages: Sequence[Page]) -> str:
    """The course map as a page: each challenge linked when its page was built."""
    import nbformat

    by_topic = {p.topic: p for p in pages}

    def link(challenge: Challenge, text: str) -> str:
        page = by_topic.get(challenge.topic)
        return f'<a href="{page.href}">{text}</a>' if page else text

    rows = []
    for c in COURSE:
        page = by_topic.get(c.topic)
        needs = ", ".join(link(BY_TOPIC[n], BY_TOPIC[n].number) for n in c.needs) or "—"
        picture = (link(c, f'<img src="{page.key_picture}" alt="key picture of {c.number}">')
                   if page and page.key_picture else "")
        executed = (f"{page.scale}, {page.server}, {page.executed_at}" if page
                    else "not built yet: <code>make site</code>")
        rows.append(f"<tr><td>{c.number}</td><td><strong>{link(c, html.escape(c.title))}"
                    f"</strong><br>{html.escape(c.practise)}</td><td>{needs}</td>"
                    f"<td>{LEVELS[c.level]}, {_duration(c.minutes)}</td>"
                    f"<td>{picture}</td><td>{executed}</td></tr>")
    table = ('<table class="lab-site-map"><thead><tr><th>#</th><th>challenge: what you '
             "practise</th><th>needs first</th><th>level, time</th><th>key picture</th>"
             "<th>executed</th></tr></thead><tbody>\n" + "\n".join(rows)
             + "\n</tbody></table>")
    intro = (
        "# Postgres Production Lab: every solution, executed\n\n"
        "Each page is a challenge's reference solution run top to bottom against a real "
        "PostgreSQL server, with its outputs: plans, plots, session transcripts and the "
        "measured tables. Read them in any order that respects *needs first*; 02 and 03 "
        "open most of the course. To try a challenge yourself, open its learner copy in "
        "`notebooks/` (`make lab`): the answers there are stubs for you to write.")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(intro),
                                         nbformat.v4.new_markdown_cell(table)])
    scales = sorted({f"{p.scale} scale on {p.server}" for p in pages})
    dates = sorted(p.executed_at for p in pages)
    stamp = ("Executed at " + "; ".join(scales) + (f", {dates[0]}" if dates else "")
             + (f" to {dates[-1]}" if len(dates) > 1 and dates[-1] != dates[0] else "") + "."
             if pages else "No challenge built yet.")
    return render(nb, "Postgres Production Lab", {"kind": "index", "toc": [], "stamp": stamp})
