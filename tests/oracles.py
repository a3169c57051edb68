"""Checks that know nothing of the code they check."""

from __future__ import annotations

from sqlalchemy import Integer, column, func, inspect, select, table


async def columns_holding(session, value: int) -> dict[str, int]:
    """Every integer column of every table the database has, found from its own catalogue (not from what
    forget_user or rows_about_user know), and how many rows hold `value` there."""
    connection = await session.connection()

    def catalogue(sync) -> dict[str, list[str]]:
        found = inspect(sync)
        return {name: [c["name"] for c in found.get_columns(name) if isinstance(c["type"], Integer)]
                for name in found.get_table_names()}

    held = {}
    for name, columns in (await connection.run_sync(catalogue)).items():
        for column_name in columns:
            count = await session.scalar(select(func.count()).select_from(table(name))
                                         .where(column(column_name) == value))
            if count:
                held[f"{name}.{column_name}"] = count
    return held
