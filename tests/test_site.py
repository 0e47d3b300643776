"""The self-study site (`make site`) built at tiny scale for two challenges, then checked.

Two short notebooks keep this under half a minute of one worker; the build uses this
worker's LAB_DB_NAMESPACE plus a suffix, so it never clones into another run's databases.
"""

from __future__ import annotations

import base64
import json
import os
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from labs.course import site

pytestmark = pytest.mark.notebook

# the two fastest at tiny scale (measured: 04 in 11-14 s, 08 in 7-11 s, 00 in 16 s);
# 04 draws its plans before and after the fix, so there are images to check
ONLY = ("04", "08")


class Parsed(HTMLParser):
    """The ids, links and images of one page, and whether any output is an error."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []
        self.errors = 0
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if "id" in attr:
            self.ids.add(attr["id"])
        if tag == "a" and "href" in attr:
            self.links.append(attr["href"])
        if tag == "img":
            self.images.append(attr.get("src", ""))
        if "lab-site-error" in attr.get("class", "").split():
            self.errors += 1
        self._in_title = tag == "title"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False


def parse(path: Path) -> Parsed:
    parsed = Parsed()
    parsed.feed(path.read_text())
    return parsed


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("site")
    old = os.environ.get("LAB_DB_NAMESPACE")
    os.environ["LAB_DB_NAMESPACE"] = (old or "") + "test_"
    try:
        result = site.build("tiny", ",".join(ONLY), out=out, progress=False)
    finally:
        if old is None:
            os.environ.pop("LAB_DB_NAMESPACE", None)
        else:
            os.environ["LAB_DB_NAMESPACE"] = old
    return result


def test_every_page_exists(built: site.Build) -> None:
    """The index, one page per chosen challenge and the manifest are written."""
    names = {p.name for p in built.out.iterdir()}
    expected = {"index.html", site.MANIFEST} | {
        f"{c.number}_{c.topic}.html" for c in site.select(ONLY)}
    assert expected <= names, f"missing: {expected - names}"
    assert [p.number for p in built.pages] == list(ONLY)


def test_cells_ran_without_errors_and_checks_passed(built: site.Build) -> None:
    """No cell output is an error, in the run and on the rendered pages, and every check passed."""
    assert built.problems == []
    for path in built.out.glob("*.html"):
        assert parse(path).errors == 0, f"{path.name} shows an error output"
        assert "Traceback (most recent call last)" not in path.read_text(), path.name


def test_links_resolve(built: site.Build) -> None:
    """Every relative link points at a page of the site and, with a fragment, at an id in it."""
    pages = {path.name: parse(path) for path in built.out.glob("*.html")}
    checked = 0
    for name, page in pages.items():
        for href in page.links:
            url = urlsplit(href)
            if url.scheme in ("http", "https", "mailto"):
                continue
            target = url.path or name
            assert target in pages, f"{name} links to {href}, which is not in the site"
            if url.fragment:
                assert unquote(url.fragment) in pages[target].ids or \
                    url.fragment in pages[target].ids, f"{name}: no anchor for {href}"
            checked += 1
    assert checked > 10  # the course map, the neighbours and the tables of contents


def test_images_are_embedded_and_not_empty(built: site.Build) -> None:
    """Every picture is a data: URI whose bytes decode to a real image; 04 shows at least one."""
    count = 0
    for path in built.out.glob("*.html"):
        for src in parse(path).images:
            assert src.startswith("data:image/"), f"{path.name}: image not embedded: {src[:80]}"
            header, _, payload = src.partition(",")
            assert header.endswith(";base64"), f"{path.name}: {header}"
            raw = base64.b64decode(payload)
            assert len(raw) > 500, f"{path.name}: an image of {len(raw)} bytes"
            assert raw.startswith((b"\x89PNG", b"\xff\xd8", b"<svg", b"<?xml")), path.name
            count += 1
    assert len(parse(built.out / "04_slow_query.html").images) >= 1
    assert count >= 2  # a plan on 04's page and its key picture on the index


def test_pages_state_scale_server_and_date_and_have_contents(built: site.Build) -> None:
    """Each page says where it ran and opens with a table of contents that resolves."""
    manifest = json.loads((built.out / site.MANIFEST).read_text())
    for entry in manifest["pages"]:
        text = (built.out / entry["href"]).read_text()
        assert f"Executed at {entry['scale']} scale" in text
        assert entry["server"].startswith("PostgreSQL ") and entry["server"] in text
        assert entry["executed_at"] in text
        assert 'class="lab-site-toc"' in text
        assert entry["href"] in (built.out / "index.html").read_text()
    assert parse(built.out / "index.html").title == "Postgres Production Lab"
