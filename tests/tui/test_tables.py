"""Keyed tables change only the cells a message changes."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult

from sutazai.tui.widgets.tables import KeyedTable

COLUMNS = [("name", "Name", None), ("state", "State", 9)]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable(COLUMNS)


def rows(*pairs: tuple[str, str]) -> dict[str, list[Text]]:
    return {name: [Text(name), Text(state)] for name, state in pairs}


async def test_sync_updates_changed_cells_in_place_and_keeps_the_cursor() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows(("a", "healthy"), ("b", "healthy"), ("c", "healthy")))
        table.move_cursor(row=1)
        updated: list[tuple[object, object]] = []
        original = table.update_cell

        def spy(row: object, column: object, value: object, **kw: object) -> None:
            updated.append((row, column))
            original(row, column, value, **kw)  # type: ignore[arg-type]

        table.update_cell = spy  # type: ignore[method-assign]
        cleared: list[bool] = []
        table.clear = lambda columns=False: cleared.append(True) or table  # type: ignore[method-assign]
        table.sync(rows(("a", "healthy"), ("b", "unhealthy"), ("c", "healthy")))
        await pilot.pause()
        assert updated == [("b", "state")]
        assert cleared == []
        assert table.highlighted_key() == "b"
        assert str(table.get_cell("b", "state")) == "unhealthy"


async def test_rows_that_appear_or_vanish_are_added_and_removed() -> None:
    app = TableApp()
    async with app.run_test():
        table = app.query_one(KeyedTable)
        table.sync(rows(("a", "healthy"), ("b", "healthy")))
        table.sync(rows(("a", "healthy"), ("c", "healthy")))
        assert table.keys == ["a", "c"]
        assert table.row_count == 2
        table.sync(rows(("c", "healthy"), ("a", "healthy")))  # a new order redraws
        assert table.keys == ["c", "a"]


async def test_append_drops_the_oldest_rows_beyond_the_limit() -> None:
    app = TableApp()
    async with app.run_test():
        table = app.query_one(KeyedTable)
        for n in range(5):
            table.append(str(n), [Text(str(n)), Text("ok")], limit=3)
        assert table.keys == ["2", "3", "4"]
