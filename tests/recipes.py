"""The SQL blocks of docs/recipes.md, for the tests that run them."""

from __future__ import annotations

import re
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"


def recipe_blocks(needs: str | None = None) -> list[str]:
    """Every SQL block, or with ``needs`` only those tagged ``-- needs: <needs>`` on their first line."""
    blocks = re.findall(r"```sql\n(.*?)```", RECIPES.read_text(), re.S)
    if needs is None:
        return blocks
    return [b for b in blocks if b.startswith(f"-- needs: {needs}\n")]
