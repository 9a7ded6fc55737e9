"""One registry mechanism for everything pluggable.

Datasets, encoders, losses, model architectures, recipes (and later NIR handlers, targets
and energy profiles) are each a :class:`Registry`: a named map from a string to an object
with a one-line description. Lookups of unknown names raise :class:`UnknownNameError`
listing what exists, so a typo never ends in a ``KeyError`` traceback.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

from spikeport.core.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    summary: str


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, summary: str = "") -> Callable[[T], T]:
        """Decorator: ``@REG.register("name", "what it is")``."""

        def deco(obj: T) -> T:
            self.add(name, obj, summary)
            return obj

        return deco

    def for_types(self, *types: type, wrap: Callable | None = None) -> Callable:
        """Decorator registering one object under the class name of each of ``types`` (NIR
        node or torch module classes), summarised by the first line of its docstring;
        ``wrap(type, obj)`` stores something derived from the object instead."""

        def deco(obj):
            doc = (getattr(obj, "__doc__", None) or "").strip()
            summary = doc.splitlines()[0] if doc else ""
            for t in types:
                self.add(t.__name__, wrap(t, obj) if wrap else obj, summary)
            return obj

        return deco

    def add(self, name: str, obj: T, summary: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        if not summary:
            doc = (getattr(obj, "__doc__", None) or "").strip()
            summary = doc.splitlines()[0] if doc else ""
        self._entries[name] = Entry(name, obj, summary)

    def get(self, name: str) -> T:
        try:
            return self._entries[name].obj
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}",
                f"use one of: {', '.join(sorted(self._entries))}",
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        for name in self.names():
            yield self._entries[name]
