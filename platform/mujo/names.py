"""The one rule for every name that becomes part of a path, and for paths a card may point at.

Run names, dataset names, split names and the files a bring-your-own card names all end up as parts of paths
(``<root>/<run>/raw/<dataset>/…``, ``shards/<dataset>/<split>/…``). A name read from a config, a card or a raw
file is untrusted: ``..``, ``/``, a leading dot or dash, or an absolute path would write (or read) outside the run
or the source folder. Every such name goes through :func:`check_name` (or :func:`check_split`), and every path a
card names goes through :func:`inside`. No Ray, no I/O.
"""

from __future__ import annotations

import os
import posixpath
import re

from mujo.errors import InputError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""A letter or digit first (no ``.``, ``..``, hidden or option-like names), then letters, digits, ``_ . -``."""
_NAME = re.compile(NAME_PATTERN)
SPLITS: tuple[str, ...] = ("train", "val", "test")


class UnsafeName(InputError):
    """A name or path that would leave its folder; the message names the value and the rule."""


def check_name(value: object, what: str = "name") -> str:
    """``value`` when it is a safe single path component (see :data:`NAME_PATTERN`), else :class:`UnsafeName`."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise UnsafeName(f"{what} {value!r} is not a safe name: use 1-128 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit (no '/', no '..')")
    return value


def check_split(value: object, what: str = "split") -> str:
    """``value`` when it is one of :data:`SPLITS`, else :class:`UnsafeName`."""
    if value not in SPLITS:
        raise UnsafeName(f"{what} {value!r} is not one of {list(SPLITS)}")
    return str(value)


def inside(base: str, relative: str, what: str = "path", allow_outside: bool = False) -> str:
    """``relative`` joined to ``base`` (a local folder or ``s3://`` prefix), refused when it is absolute, a URI, or
    climbs out of ``base`` with ``..`` — unless ``allow_outside`` (an explicit opt-in of the card's author), in
    which case an absolute path or URI is returned as given."""
    rel = str(relative)
    absolute = rel.startswith(("/", "\\")) or "://" in rel or bool(re.match(r"^[A-Za-z]:[\\/]", rel))
    if absolute:
        if allow_outside:
            return rel
        raise UnsafeName(f"{what} {rel!r} is absolute; card paths are relative to the source folder "
                         "(set allow_outside_source: true in the card to read files elsewhere)")
    parts = rel.replace("\\", "/").split("/")
    depth = 0
    for part in parts:
        if part == "..":
            depth -= 1
        elif part not in ("", "."):
            depth += 1
        if depth < 0 and not allow_outside:
            raise UnsafeName(f"{what} {rel!r} climbs out of the source folder with '..' "
                             "(set allow_outside_source: true in the card to read files elsewhere)")
    if base.startswith("s3://"):
        return "s3://" + posixpath.normpath(posixpath.join(base[5:], rel))
    return os.path.normpath(os.path.join(base, rel))


__all__ = ["NAME_PATTERN", "SPLITS", "UnsafeName", "check_name", "check_split", "inside"]
