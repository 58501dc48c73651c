"""The dashboard's pages: a registry that drives the app's navigation (``dashboard.app``).

Each page is a ``PageInfo``; ``render`` is a ``"module:function"`` string (or a
callable) drawing the page for the runs root, ``render(root: Path) -> None``,
imported only when the page is shown, so listing the pages imports no page.
The navigation lists the pages by ``order`` (then as registered); the first is
the default page.

A plugin adds a page with no edit of the dashboard, through the entry point
group ``t2i_audit.pages`` (the entry point's name is the registry key)::

    [project.entry-points."t2i_audit.pages"]
    toy = "my_package.toy_page:PAGE"     # a dashboard.pages.PageInfo, a dict of its fields,
                                         # or a function of no argument returning one

A plugin page whose ``url_path`` is taken, or that cannot be loaded, is left
out of the navigation with a one-line problem (``load_pages``) the app shows;
a built-in page that fails is a bug and raises.

    from dashboard.pages import page_titles
    page_titles()  # [("Overview", "overview"), ("Runs", "runs"), ("Metrics", "metrics"), ("Compare", "compare"),
                   #  ("Memorization", "memorization"), ("Audits", "audits"), ("Bias", "bias"), ("Report", "report")]
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from bench.registry import Registry, load_object

log = logging.getLogger("t2i_audit")

_URL_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_logged: set[str] = set()  # problems already logged (the app reloads the pages on every rerun)


@dataclass(frozen=True)
class PageInfo:
    """One page of the dashboard's navigation."""

    title: str
    icon: str
    url_path: str
    render: Callable[[Path], None] | str  # "module:function" (imported on first use) or the function
    order: int = 100

    def renderer(self) -> Callable[[Path], None]:
        """The page's ``render(root)``, importing a ``"module:function"`` string."""
        return load_object(self.render) if isinstance(self.render, str) else self.render


def _as_page(entry: Any) -> PageInfo:
    if callable(entry) and not isinstance(entry, PageInfo):  # a factory: ``toy = "my_package:page"``
        entry = entry()
    if isinstance(entry, Mapping):
        entry = PageInfo(**entry)
    if not isinstance(entry, PageInfo):
        raise TypeError(f"a dashboard page entry must be a dashboard.pages.PageInfo, got {type(entry).__name__}")
    if not isinstance(entry.url_path, str) or not _URL_PATH.match(entry.url_path):
        raise ValueError(f"a dashboard page needs a url_path of letters, digits, '-' and '_', got {entry.url_path!r}")
    return entry


PAGES: Registry[PageInfo] = Registry("dashboard page", entry_point_group="t2i_audit.pages", check=_as_page)
PAGES.add("overview", PageInfo("Overview", ":material/table_view:", "overview", "dashboard.views.overview_page:render", 5))
PAGES.add("runs", PageInfo("Runs", ":material/photo_library:", "runs", "dashboard.views.runs_page:render", 10))
PAGES.add("metrics", PageInfo("Metrics", ":material/query_stats:", "metrics",
                              "dashboard.views.metrics_page:render", 20))  # fmt: skip
PAGES.add("compare", PageInfo("Compare", ":material/compare:", "compare", "dashboard.views.compare_page:render", 25))
PAGES.add("memorization", PageInfo("Memorization", ":material/content_copy:", "memorization",
                                   "dashboard.views.memorization_page:render", 30))  # fmt: skip
PAGES.add("audits", PageInfo("Audits", ":material/fact_check:", "audits", "dashboard.views.audits_page:render", 40))
PAGES.add("bias", PageInfo("Bias", ":material/diversity_3:", "bias", "dashboard.views.bias_page:render", 45))
PAGES.add("report", PageInfo("Report", ":material/description:", "report", "dashboard.views.report_page:render", 50))


def load_pages(registry: Registry[PageInfo] | None = None) -> tuple[list[PageInfo], list[str]]:
    """The pages the app shows (of ``registry``, default ``PAGES``), in navigation order, and one line
    per plugin page left out."""
    registry = PAGES if registry is None else registry
    pages: list[PageInfo] = []
    problems: list[str] = []
    taken: dict[str, str] = {}
    for name in registry.names():
        builtin = registry.origin(name) == "built-in"
        try:
            page = registry.get(name)
        except Exception as exc:  # a broken plugin must not take the dashboard down
            if builtin:
                raise
            problems.append(f"dashboard page {name!r} ({registry.origin(name)}) is left out: {exc}")
            continue
        if page.url_path in taken:
            problems.append(f"dashboard page {name!r} ({registry.origin(name)}) is left out: its url_path "
                            f"{page.url_path!r} is taken by page {taken[page.url_path]!r}")  # fmt: skip
            continue
        taken[page.url_path] = name
        pages.append(page)
    for problem in problems:
        if problem not in _logged:
            _logged.add(problem)
            log.warning("%s", problem)
    pages.sort(key=lambda page: page.order)  # stable: registration order among equals
    return pages, problems


def page_titles(registry: Registry[PageInfo] | None = None) -> list[tuple[str, str]]:
    """``(title, url_path)`` of every page the app's navigation lists, in its order."""
    return [(page.title, page.url_path) for page in load_pages(registry)[0]]


def page_title(url_path: str, registry: Registry[PageInfo] | None = None) -> str | None:
    """The title of the page at ``url_path``, or None when no page has it."""
    return next((title for title, path in page_titles(registry) if path == url_path), None)
