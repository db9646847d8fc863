"""Prepared generators (`styleclip prepare`): a folder with a generator's statistics and relevance, recorded in
`prepared.json` and indexed in the user cache by the generator's fingerprint, so later runs find them."""
from __future__ import annotations

import json
from pathlib import Path

from styleclip.store.cache import cache_path
from styleclip.util.fingerprint import generator_fingerprint

PREPARED_RECORD = "prepared.json"


def _index(fingerprint: str) -> Path:
    return cache_path("prepared", fingerprint, suffix=".json")


def register_prepared(g, folder: str | Path, record: dict) -> Path:
    """Write `folder/prepared.json` (the record, with the generator's fingerprint) and point the user cache's
    index at it, so later runs of this generator find its statistics and relevance."""
    folder = Path(folder).resolve()
    record = dict(record, generator=generator_fingerprint(g), config=g.config.to_dict())
    (folder / PREPARED_RECORD).write_text(json.dumps(record, indent=1))
    index = _index(record["generator"])
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps({"folder": str(folder)}))
    return folder / PREPARED_RECORD


def find_prepared(g) -> tuple[Path, dict] | None:
    """(folder, record) of this generator's `styleclip prepare` run, if one is registered and still there."""
    fingerprint = generator_fingerprint(g)
    try:
        folder = Path(json.loads(_index(fingerprint).read_text())["folder"])
        record = json.loads((folder / PREPARED_RECORD).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (folder, record) if record.get("generator") == fingerprint else None


def prepared_file(g, name: str, **must_match) -> Path | None:
    """The file `name` ('stats', 'relevance') of this generator's prepared folder when its record matches
    `must_match` and the file is there; else None."""
    found = find_prepared(g)
    if found is None or not found[1].get(name):
        return None
    folder, record = found
    if any(record.get(k) != v for k, v in must_match.items()):
        return None
    path = folder / record[name]
    return path if path.is_file() else None
