"""Where results go: output paths checked before any work, and files written atomically (a temp file in the
same folder, then os.replace), so a failed run leaves every earlier output as it was."""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from pathlib import Path

from styleclip.errors import OutputError

MAX_NAME_BYTES = 255  # a path component on common file systems
MAX_PATH_BYTES = 4000
TEMP_PREFIX = ".styleclip-tmp-"
ORPHAN_AGE_S = 3600.0  # a temp file of a dead process older than this is removed when its folder is written


def short_name(name: str, limit: int = 100) -> str:
    """A file-name component of at most `limit` bytes: a long one keeps its start, a hash and its suffix."""
    name = re.sub(r"[/\\\0]", "_", name) or "_"
    if len(name.encode()) <= limit:
        return name
    stem, dot, suffix = name.rpartition(".") if "." in name[1:] else (name, "", "")
    suffix = dot + suffix if len(suffix) <= 10 else ""
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    keep = limit - len(suffix.encode()) - len(digest) - 1
    head = stem.encode()[:keep].decode("utf-8", "ignore")
    return f"{head}-{digest}{suffix}"


def slug(text: str, limit: int = 60) -> str:
    """'A face with blond hair!' -> 'a-face-with-blond-hair': lower-case words joined by '-', at most `limit`
    characters (cut at a word), 'edit' when nothing is left."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = ""
    for w in words:
        if len(out) + len(w) + bool(out) > limit:
            break
        out += ("-" if out else "") + w
    return out or (words[0][:limit] if words else "edit")


def run_folder(out: str | Path, name: str, *, overwrite: bool = False) -> Path:
    """The folder one run writes into: `out/name`, or when that exists `out/name-2`, `out/name-3`, ...;
    with `overwrite` always `out/name` (earlier files of the same names are replaced). Not created here."""
    out = Path(out)
    name = short_name(name, 100)
    folder = out / name
    k = 2
    while not overwrite and (folder.exists() or folder.is_symlink()):
        folder = out / f"{name}-{k}"
        k += 1
    return folder


def _check_place(path: Path, what: str) -> None:
    """The folders above `path`: none of them a file, the deepest existing one writable; names not too long."""
    if len(str(path).encode()) > MAX_PATH_BYTES:
        raise OutputError(f"{what} {str(path)[:60]}...: path too long")
    for part in path.parts:
        if len(part.encode()) > MAX_NAME_BYTES:
            raise OutputError(f"{what} {path}: the name {part[:40]}... is longer than {MAX_NAME_BYTES} bytes")
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputError(f"{what} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputError(f"{what} {path}: cannot write in {parent} (permission denied)")
            return


def check_file(path: str | Path, what: str = "output", *, suffixes: tuple[str, ...] | None = None) -> Path:
    """Check an output file path before any work; `suffixes`: the extensions that can be written there."""
    path = Path(path)
    if str(path) in ("", "."):
        raise OutputError(f"{what}: empty path")
    _check_place(path, what)
    if path.is_dir():
        raise OutputError(f"{what} {path}: is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{what} {path}: the existing file is read-only")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise OutputError(f"{what} {path}: unsupported extension {path.suffix or '(none)'!r}; use one of "
                          f"{', '.join(suffixes)}")
    return path


def check_dir(path: str | Path, what: str = "output folder") -> Path:
    """Check an output folder before any work (it need not exist yet)."""
    path = Path(path)
    _check_place(path / "x", what)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path}: is a file, not a folder")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: cannot write in it (permission denied)")
    return path


def image_suffixes() -> tuple[str, ...]:
    from PIL import Image

    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE))


def distinct(*paths) -> None:
    """Two outputs of one run must not be the same file."""
    seen = {}
    for p in paths:
        if p is None:
            continue
        key = os.path.abspath(p)
        if key in seen:
            raise OutputError(f"{seen[key]} and {p} are the same file; give different output paths")
        seen[key] = p


def _clean_orphans(folder: Path) -> None:
    """Remove temp files that killed runs left behind (their process is gone, or they are old)."""
    try:
        entries = list(folder.glob(TEMP_PREFIX + "*"))
    except OSError:
        return
    for p in entries:
        m = re.match(re.escape(TEMP_PREFIX) + r"(\d+)-", p.name)
        try:
            alive = bool(m) and _alive(int(m.group(1)))
            if not alive or time.time() - p.stat().st_mtime > 24 * ORPHAN_AGE_S:
                p.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class Outputs:
    """A set of files written together: each is staged as a temp file beside its target and all are renamed
    into place by `commit()`; `discard()` (or an exception in the `with` block) removes the temp files and the
    folders this set created, so a failed run changes nothing."""

    def __init__(self):
        self._staged: list[tuple[Path, Path]] = []
        self._made: list[Path] = []
        self._count = 0

    def __enter__(self) -> "Outputs":
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False

    def temp(self, path: str | Path) -> Path:
        """The temp path to write `path`'s content to (same folder and suffix); created folders are recorded."""
        path = Path(path)
        missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create the folder {path.parent}: {e.strerror or e}") from None
        self._made += reversed(missing)
        _clean_orphans(path.parent)
        self._count += 1
        tmp = path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{self._count}{''.join(path.suffixes)[-20:]}")
        self._staged.append((tmp, path))
        return tmp

    def write(self, path: str | Path, writer) -> Path:
        """Stage `writer(temp_path)`; an OSError while writing is one OutputError line."""
        tmp = self.temp(path)
        try:
            writer(tmp)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        return Path(path)

    def image(self, image, path: str | Path) -> Path:
        """Stage a PIL image (format from the target's extension)."""
        from PIL import Image

        fmt = Image.registered_extensions().get(Path(path).suffix.lower())
        return self.write(path, lambda tmp: image.save(tmp, format=fmt))

    def torch(self, obj, path: str | Path) -> Path:
        import torch

        return self.write(path, lambda tmp: torch.save(obj, tmp))

    def commit(self) -> None:
        try:
            for tmp, path in self._staged:
                os.replace(tmp, path)
        except OSError as e:
            self.discard()
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        self._staged, self._made = [], []

    def discard(self) -> None:
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        for folder in reversed(self._made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._staged, self._made = [], []


def write_atomic(path: str | Path, writer) -> Path:
    """Write one file atomically: `writer(temp_path)`, then rename onto `path`."""
    with Outputs() as out:
        out.write(path, writer)
    return Path(path)
