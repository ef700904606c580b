"""A DataTable whose rows have keys and are updated in place from each stream message."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from rich.console import RenderableType
from rich.text import Text
from textual.cache import LRUCache
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist, RowKey

_K = TypeVar("_K")
_V = TypeVar("_V")

Cell = RenderableType
"""What a cell holds: always a renderable, never a markup string (data is not markup)."""


def _signature(cell: Cell) -> object:
    if isinstance(cell, Text):
        return ("text", cell.plain, str(cell.style), tuple(cell.spans))
    if isinstance(cell, str):
        return ("str", cell)
    return ("object", id(cell))


class KeyedTable(DataTable[Cell]):
    """A table of keyed rows that :meth:`sync` brings up to date without redrawing it whole.

    A message that changes a figure touches that cell only; a row that appears is added and one
    that disappears is removed. Only when the order of rows has to change (rare: an instance
    replaced by another) is the table rebuilt, keeping the cursor on the same key.

    A changed figure in a fixed-width column re-renders its row only. ``DataTable.update_cell``
    would count a new version of the whole table, which drops every cached row and cell, so the
    next frame renders every visible cell again (through Rich, the dashboard's largest cost):
    with a probe round or traffic sample a second per table, every frame and every screen
    switch did. Columns that fit their content still go through ``update_cell``, since a new
    width moves every row.
    """

    DEFAULT_CSS = """
    KeyedTable {
        height: 1fr;
    }
    """

    def __init__(
        self,
        columns: Sequence[tuple[str, str, int | None]],
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """Make a table with ``(key, label, width)`` columns (``None`` width: fit content)."""
        super().__init__(
            id=id, classes=classes, cursor_type="row", zebra_stripes=True, show_cursor=True
        )
        self._columns = list(columns)
        self._signatures: dict[str, list[object]] = {}
        self._order: list[str] = []

    def on_mount(self) -> None:
        """Start what the widget needs once it is mounted."""
        for key, label, width in self._columns:
            self.add_column(label, key=key, width=width)

    @property
    def keys(self) -> list[str]:
        """The row keys in display order."""
        return list(self._order)

    def highlighted_key(self) -> str | None:
        """The key of the row under the cursor, if any."""
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    def sync(self, rows: Mapping[str, Sequence[Cell]]) -> None:
        """Make the table show ``rows`` (in their order), touching only what changed."""
        wanted = list(rows)
        for key in [k for k in self._order if k not in rows]:
            self._remove(key)
        for key, cells in rows.items():
            if key in self._signatures:
                self._update(key, cells)
            else:
                self._add(key, cells)
        if self._order != wanted:
            # Rows appeared out of place, or the order changed: rare enough to redraw.
            self._rebuild(rows)

    def append(self, key: str, cells: Sequence[Cell], *, limit: int | None = None) -> None:
        """Add a row at the end (a log-like table), dropping the oldest beyond ``limit``."""
        if key in self._signatures:
            self._update(key, cells)
            return
        self._add(key, cells)
        while limit is not None and len(self._order) > limit:
            self._remove(self._order[0])

    def forget(self) -> None:
        """Remove every row (the table then shows a different query, not a new message)."""
        self.clear()
        self._signatures.clear()
        self._order.clear()

    def _add(self, key: str, cells: Sequence[Cell]) -> None:
        self.add_row(*cells, key=key)
        self._signatures[key] = [_signature(c) for c in cells]
        self._order.append(key)

    def _remove(self, key: str) -> None:
        with contextlib.suppress(RowDoesNotExist):
            self.remove_row(key)
        self._signatures.pop(key, None)
        self._order.remove(key)

    def _update(self, key: str, cells: Sequence[Cell]) -> None:
        old = self._signatures[key]
        in_place: set[ColumnKey] = set()
        for index, cell in enumerate(cells):
            signature = _signature(cell)
            if old[index] != signature:
                column, _, width = self._columns[index]
                if width is None:
                    self.update_cell(key, column, cell, update_width=True)
                else:
                    # What update_cell stores, without counting a new table version.
                    column_key = ColumnKey(column)
                    self._data[RowKey(key)][column_key] = cell
                    in_place.add(column_key)
                old[index] = signature
        if in_place:
            self._rerender(key, in_place)

    def _rerender(self, key: str, columns: set[ColumnKey]) -> None:
        """Drop what DataTable cached of ``columns`` in row ``key``; repaint that row alone."""
        row_key = RowKey(key)
        row_index = self.get_row_index(row_key)
        # Cells are cached by (row key, column key, ...), rows by (row key, ...), a row's
        # renderables by (table version, row index), lines by y: rebuilt from cached rows.
        _discard(self._cell_render_cache, lambda k: k[0] == row_key and k[1] in columns)
        _discard(self._row_render_cache, lambda k: k[0] == row_key)
        _discard(self._row_renderable_cache, lambda k: k[1] == row_index)
        self._line_cache.clear()
        self.refresh_row(row_index)

    def _rebuild(self, rows: Mapping[str, Sequence[Cell]]) -> None:
        keep = self.highlighted_key()
        self.forget()
        for key, cells in rows.items():
            self._add(key, cells)
        if keep is not None and keep in self._signatures:
            self.move_cursor(row=self._order.index(keep))


def _discard(cache: LRUCache[_K, _V], stale: Callable[[_K], bool]) -> None:
    for key in [k for k in cache.keys() if stale(k)]:  # noqa: SIM118 - not iterable
        cache.discard(key)
