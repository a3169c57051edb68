"""Checks that know nothing of the code they check."""

from __future__ import annotations

from sqlalchemy import JSON, Integer, String, Text, cast, column, func, inspect, select, table


async def columns_holding(session, value: int) -> dict[str, int]:
    """Every column of every table the database has, found from its own catalogue (not from what forget_user
    or rows_about_user know), and how many rows hold `value` there: as the number in an integer column, or
    written out in a text or JSON one (a preference, a tag, a message)."""
    connection = await session.connection()

    def catalogue(sync) -> dict[str, list[tuple[str, object]]]:
        found = inspect(sync)
        return {name: [(c["name"], c["type"]) for c in found.get_columns(name)] for name in found.get_table_names()}

    held = {}
    for name, columns in (await connection.run_sync(catalogue)).items():
        if name == "alembic_version":  # the schema's version number ("0006"), nobody's data
            continue
        for column_name, kind in columns:
            if isinstance(kind, Integer):
                matches = column(column_name) == value
            elif isinstance(kind, String | Text | JSON):
                matches = cast(column(column_name), Text).like(f"%{value}%")
            else:  # binary: CLIP vectors, which hold no ids
                continue
            count = await session.scalar(select(func.count()).select_from(table(name)).where(matches))
            if count:
                held[f"{name}.{column_name}"] = count
    return held
