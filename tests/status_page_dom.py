"""Read the status page's HTML (as `observe.status_page` wrote it, or as Chromium rendered it) into what a
person sees: the cluster rows with their cells' text, every URL the page refers to, its refresh."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

# Every attribute through which a page can make a browser fetch or link something.
URL_ATTRS = frozenset(
    {"href", "src", "srcset", "action", "formaction", "poster", "data", "background", "cite", "manifest",
     "ping", "xlink:href", "icon", "longdesc", "codebase", "archive"}
)  # fmt: skip


@dataclass
class Row:
    """One `<tr data-cluster=...>`: its data-* attributes and each cell's text, by the cell's first class."""

    attrs: dict[str, str]
    cells: dict[str, str] = field(default_factory=dict)

    @property
    def cluster(self) -> str:
        return self.attrs["data-cluster"]

    @property
    def state(self) -> str:
        return self.cells["state"]


@dataclass
class Page:
    rows: list[Row] = field(default_factory=list)
    urls: list[tuple[str, str, str]] = field(default_factory=list)  # (tag, attribute, value)
    links: dict[str, str] = field(default_factory=dict)  # <a> text -> href
    refresh: str | None = None
    scripts: int = 0
    styles: list[str] = field(default_factory=list)

    def row(self, cluster: str) -> Row:
        (found,) = [r for r in self.rows if r.cluster == cluster]
        return found

    def external_references(self) -> list[str]:
        """Every reference that is not a relative path: a scheme (`https:`, `data:`), a host (`//x`), or an
        absolute URL in the CSS; the page must have none."""
        out = [f"<{tag} {attr}={value!r}>" for tag, attr, value in self.urls if not _relative(value)]
        out += [f"CSS {m!r}" for css in self.styles for m in re.findall(r"url\([^)]*\)|@import[^;]*", css)]
        return out


def _relative(url: str) -> bool:
    parts = urlsplit(url.strip())
    return not parts.scheme and not parts.netloc and not url.strip().startswith("//")


def parse(text: str) -> Page:
    parser = _Parser()
    parser.feed(text)
    parser.close()
    return parser.page


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._row: Row | None = None
        self._cell: str | None = None
        self._text: list[str] = []
        self._a: str | None = None
        self._a_text: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.page.urls += [(tag, k, v) for k, v in a.items() if k in URL_ATTRS]
        if tag == "meta" and a.get("http-equiv", "").lower() == "refresh":
            self.page.refresh = a.get("content")
        elif tag == "script":
            self.page.scripts += 1
        elif tag == "style":
            self._in_style = True
        elif tag == "tr" and "data-cluster" in a:
            self._row = Row({k: v for k, v in a.items() if k.startswith("data-")})
            self.page.rows.append(self._row)
        elif tag == "td" and self._row is not None:
            self._cell, self._text = (a.get("class") or "").split(" ")[0], []
        elif tag in ("br", "div") and self._cell is not None:  # a line of its own: not glued to the last
            self._text.append(" ")
        elif tag == "a":
            self._a, self._a_text = a.get("href", ""), []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.cells[self._cell] = " ".join("".join(self._text).split())
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "style":
            self._in_style = False
        elif tag == "a" and self._a is not None:
            self.page.links["".join(self._a_text).strip()] = self._a
            self._a = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._text.append(data)
        if self._a is not None:
            self._a_text.append(data)
        if self._in_style:
            self.page.styles.append(data)
