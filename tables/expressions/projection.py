"""ProjectionExpression (and AttributesToGet): the document paths a read returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import paths
from .binding import Binder
from .grammar import parse
from .paths import Path

Item = dict[str, Any]


class Projection:
    """The paths to return. ``attributes``: their top-level names."""

    def __init__(self, projected: list[Path]) -> None:
        self.paths = projected
        self.attributes = {str(p[0]) for p in projected}

    def apply(self, item: Item) -> Item:
        """The projected item: only the paths named, nested as in the item, missing ones left out."""
        return paths.project(item, self.paths)


def compile_projection(text: str, names: Mapping[str, str] | None) -> Projection:
    raw = parse(text, "projection", "ProjectionExpression")
    binder = Binder(names, None, "ProjectionExpression")
    projected = [binder.path(node[1]) for node in raw.tree]
    paths.check_overlaps(projected, binder.prefix)
    return Projection(projected)
