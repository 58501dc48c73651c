"""One small registry type for everything the commands are driven by: metrics, feature
extractors, audit probes and dashboard pages (docs/DESIGN.md §4).

    PROBES = Registry("audit probe", entry_point_group="t2i_audit.probes")
    PROBES.add("memorization", "audit.probes.memorization:PROBE")   # lazy: imported on first get
    PROBES.get("memorisation")  # UserError: unknown audit probe 'memorisation'; did you mean 'memorization'? ...

* A name is registered once: ``add`` refuses a duplicate (a programming error,
  so ``ValueError``).  A plugin whose name is taken is refused with a warning,
  and the built-in entry stays.
* An entry is an object or a lazy ``"module:attribute"`` string, imported on
  first ``get``, so listing the names of a registry imports nothing heavy.
* Third-party packages add entries through Python entry points
  (``importlib.metadata.entry_points(group=...)``), read once on first use:

      [project.entry-points."t2i_audit.probes"]
      toy = "my_package.toy:PROBE"
"""

from __future__ import annotations

import difflib
import importlib
import logging
from importlib import metadata
from typing import Any, Callable, Generic, Iterator, TypeVar

from bench.errors import UserError

log = logging.getLogger("t2i_audit")
T = TypeVar("T")


def load_object(target: str) -> Any:
    """Import ``"module:attribute"`` (the attribute may be dotted)."""
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Names -> entries, with lazy entries, duplicate refusal, suggestions and entry-point plugins."""

    def __init__(self, kind: str, entry_point_group: str | None = None, check: Callable[[Any], T] | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._check = check  # validates (and may convert) a loaded entry
        self._entries: dict[str, Any] = {}
        self._origin: dict[str, str] = {}
        self._plugins_read = entry_point_group is None

    def add(self, name: str, entry: T | str, origin: str = "built-in") -> None:
        """Register ``entry`` (an object, or ``"module:attribute"``) under ``name``; refuse a duplicate."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({self._origin[name]} and {origin})")
        self._entries[name] = entry
        self._origin[name] = origin

    def _read_plugins(self) -> None:
        if self._plugins_read:
            return
        self._plugins_read = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            origin = f"plugin {ep.value}" + (f" ({ep.dist.name})" if getattr(ep, "dist", None) else "")
            if ep.name in self._entries:
                log.warning("%s %r from %s is refused: the name is taken by %s", self.kind, ep.name, origin,
                            self._origin[ep.name])
                continue
            self.add(ep.name, ep, origin)

    def names(self) -> list[str]:
        """Every name, built-in entries first in the order added, then plugins."""
        self._read_plugins()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        self._read_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def origin(self, name: str) -> str:
        self._read_plugins()
        return self._origin[name]

    def suggest(self, name: str) -> str:
        """'; did you mean 'x'?' for a near miss, else ''."""
        close = difflib.get_close_matches(str(name), self.names(), n=1, cutoff=0.6)
        return f"; did you mean {close[0]!r}?" if close else ""

    def unknown(self, name: str) -> UserError:
        return UserError(f"unknown {self.kind} {name!r}{self.suggest(name)} (known: {', '.join(self.names()) or 'none'})")

    def get(self, name: str) -> T:
        """The entry for ``name``, imported on first use; UserError with a suggestion for an unknown name."""
        self._read_plugins()
        if name not in self._entries:
            raise self.unknown(name)
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = load_object(entry)
        elif isinstance(entry, metadata.EntryPoint):
            try:
                entry = entry.load()
            except Exception as exc:  # a broken plugin: one line, naming it
                raise UserError(f"{self.kind} {name!r} ({self._origin[name]}) cannot be loaded: "
                                f"{type(exc).__name__}: {exc}") from exc
        if self._check is not None:
            entry = self._check(entry)
        self._entries[name] = entry
        return entry

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self.get(name)
