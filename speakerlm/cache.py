"""Where converted weights live, how they are verified, and how files are written safely.

Pretrained weights come only from installed packages. Each is converted once to safetensors in the
cache directory (`$SPEAKERLM_CACHE`, else `$XDG_CACHE_HOME/speakerlm`, else `~/.cache/speakerlm`) so
later loads are fast; weights from lesser-known packages are checked against a pinned sha256 first.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from speakerlm.errors import UserError


def quiet_transformers() -> None:
    """Keep transformers' load reports, progress bars and deprecation notices off the user's terminal."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def cache_dir() -> Path:
    root = os.environ.get("SPEAKERLM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "speakerlm"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(paths: list[Path]) -> str:
    """sha256 of the concatenated bytes of `paths` (a model split across packages hashes as one file)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def verify_sha256(paths: list[Path], expected: str, package: str) -> None:
    actual = sha256_of(paths)
    if actual != expected:
        raise UserError(
            f"{paths[0]}: sha256 {actual[:12]}… does not match the pinned {expected[:12]}…; "
            f"reinstall the pinned version of the `{package}` package"
        )


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; rename it onto `final` only if the block succeeds,
    so a crash or kill never leaves a half-written output behind."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 (and some writers, e.g. safetensors, recreate the file): give the output
        # the user's usual mode
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder next to `final`; it replaces `final` only if the block succeeds."""
    import shutil

    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(final: Path, text: str) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
