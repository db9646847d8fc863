"""How prompts and mapper names are compared."""
from __future__ import annotations

import re


def normalize_name(text: str) -> str:
    """'Curly hair' / 'curly-hair' -> 'curly_hair'."""
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")
