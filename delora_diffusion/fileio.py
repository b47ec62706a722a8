"""Files for every module: atomic writes (temporary file in the target folder, then rename), JSON, PNG, hashes.

A reader, a resumed run or a crash never sees half a file. Temporary names are hidden and carry the
writer's process id (``.NAME.PID.xxxxxxxx.tmp.EXT``, ``.NAME.tmp-PID``), so the debris a killed process
leaves is recognised and removed by the next run (``remove_stale_temporaries``). A leaf module: imports
nothing of the toolkit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # PIL is imported where images are saved, not by every user of this module
    from PIL.Image import Image as PILImage


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 minus the umask); mkstemp's 0o600 is too strict."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)  # after the write: some writers (safetensors) recreate the file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json_atomic(data: Any, path: str | os.PathLike[str], indent: int = 2, sort_keys: bool = False) -> Path:
    """``data`` as indented JSON (one trailing newline), written atomically; returns the path."""
    atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")
    return Path(path)


def json_lines(
    path: str | os.PathLike[str],
    error: type[Exception] = ValueError,
    expected: str = "JSON",
    advice: str = "",
    text: str | None = None,
) -> Iterator[tuple[str, Any]]:
    """``("path:line", value)`` for every non-empty line of a JSON-lines file (``text``: its content, when
    already read); a line that does not parse raises ``error`` naming the file, the line and what was
    ``expected``, then ``advice``."""
    if text is None:
        text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}:{number}: not {expected} ({exc.msg}){advice}") from None
        yield f"{path}:{number}", value


def save_png_atomic(image: PILImage, path: str | os.PathLike[str]) -> Path:
    """A PIL image as PNG, written atomically; returns the path."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be (or become) a folder we write into, or None: it, or a parent, is a file."""
    for candidate in (Path(path), *Path(path).parents):
        if candidate.exists():
            if candidate.is_dir():
                return None
            return "is a file, not a folder" if candidate == Path(path) else f"is inside {candidate}, which is a file"
    return None


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be a file we write, or None: it is a folder, or a parent is a file."""
    if Path(path).is_dir():
        return "is a folder; give a file name"
    blocking = next((p for p in Path(path).parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        return f"is inside {blocking}, which is a file"
    return None


def temporary_dir_name(final: str, pid: int | None = None) -> str:
    """The hidden name a folder is built under before it is renamed to ``final`` (e.g. a checkpoint)."""
    return f".{final}.tmp-{os.getpid() if pid is None else pid}"


_WITH_PID = re.compile(r"^\..+\.(?:(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp(?:\.\w+)?|(?:tmp|old)-(?P<dir_pid>\d+))$")
_WITHOUT_PID = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(?:\.\w+)?$")  # written before names carried the pid
_LEGACY_AGE_S = 3600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files and folders (anywhere under ``folder``) of writers that died; returns them.

    A temporary whose process is alive (another run writing now) is left alone; one of an older version,
    without a process id, only when it is over an hour old.
    """
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            match = _WITH_PID.match(name)
            path = Path(root) / name
            if match:
                stale = not _alive(int(match.group("pid") or match.group("dir_pid")))
            else:
                stale = bool(_WITHOUT_PID.match(name)) and time.time() - path.lstat().st_mtime > _LEGACY_AGE_S
            if stale:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                removed.append(path)
        dirs[:] = [d for d in dirs if (Path(root) / d).exists()]
    return removed
