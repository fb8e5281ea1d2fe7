"""The typed example's module: an inventory with type hints, from which
cmd/pypoolgen writes inventory_gen.go (go generate ./examples/typed)."""

from __future__ import annotations

from typing import Iterator, Optional, TypedDict


class Item(TypedDict):
    """An item in stock."""

    sku: str
    name: str
    count: int


_STOCK: dict[str, Item] = {
    "A-1": {"sku": "A-1", "name": "bolt", "count": 120},
    "B-2": {"sku": "B-2", "name": "nut", "count": 3},
    "C-3": {"sku": "C-3", "name": "washer", "count": 0},
}


def lookup(sku: str) -> Optional[Item]:
    """The item sku, or None."""
    return _STOCK.get(sku)


def restock(sku: str, count: int, *, note: str = "") -> int:
    """Add count to sku's stock and return the new count."""
    item = _STOCK[sku]
    item["count"] += count
    return item["count"]


def low_stock(threshold: int = 5) -> list[Item]:
    """The items with fewer than threshold in stock."""
    return [item for item in _STOCK.values() if item["count"] < threshold]


def skus() -> Iterator[str]:
    """Every sku, one at a time."""
    yield from sorted(_STOCK)
