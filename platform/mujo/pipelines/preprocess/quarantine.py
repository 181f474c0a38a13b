"""Quarantine accounting (Ray-free): what was set aside, how many clips that is, and the share check.

Two kinds of entries: a whole raw FILE the driver could not use (unreadable, truncated, a required column missing;
``clip_id`` None and ``clips`` the clips it holds, when its footer says) and one CLIP a file worker could not window
(bad values, an unknown label, too short, a repeated clip id; ``clip_id`` set). The share is quarantined clips over
the dataset's clips: the card's count (``dataset.json``'s ``clips``) or, when it says less, what the footers count
plus one per file whose count is unknown. The files whose clip count cannot be read hold, together, what the card
counts beyond the readable files (at least one clip each), so that an unreadable file is never counted as empty.

Above ``preprocess.max_quarantine_share`` the run fails with one message listing the first entries: before any
work when the unusable files alone exceed it (``early``), else after the file work, when the driver writes
``quarantine.json`` instead of the manifest.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from mujo.pipelines.preprocess.files import RawFile


class QuarantineExceeded(RuntimeError):
    """More of a dataset's input was quarantined than ``preprocess.max_quarantine_share`` allows."""


def entry(file: str, dataset: str, clip_id: str | None, reason: str, clips: int | None = None) -> dict:
    """One quarantine entry: a clip (``clip_id`` set) or a whole file (``clip_id`` None, with its ``clips``)."""
    e = {"file": file, "clip_id": clip_id, "dataset": dataset, "reason": reason}
    if clip_id is None:
        e["clips"] = clips
    return e


class Tally(NamedTuple):
    """A dataset's quarantine: its entries (sorted by file, then clip), the clips they hold, the dataset's clips."""

    entries: list[dict]
    clips: int
    total: int

    @property
    def share(self) -> float:
        return self.clips / max(self.total, 1)

    def summary(self) -> dict:
        """The manifest's ``quarantine`` (and ``quarantine.json``)."""
        return {"count": len(self.entries), "files": sum(e["clip_id"] is None for e in self.entries),
                "clips": self.clips, "share": round(self.share, 4), "entries": self.entries}


def tally(dataset: str, files: list[RawFile], records: list[dict], card_clips: int | None) -> Tally:
    """The quarantine of ``dataset`` from its raw files (those the driver quarantined have a ``reason``), the
    progress records of its processed files (each with its ``quarantine`` entries) and the card's clip count."""
    rows = {f.uri: f.rows for f in files}
    entries = [entry(f.uri, dataset, None, f.reason, f.rows) for f in files if f.reason]
    entries += [e if e["clip_id"] is not None else {**e, "clips": e.get("clips") or rows.get(e["file"])}
                for r in records for e in r["quarantine"]]
    entries.sort(key=lambda e: (e["file"], e["clip_id"] or ""))
    known = sum(f.rows for f in files if f.rows is not None)
    unknown = [e for e in entries if e["clip_id"] is None and e.get("clips") is None]
    total = max(int(card_clips or 0), known + len(unknown))
    clips = sum(1 if e["clip_id"] is not None else (e.get("clips") or 0) for e in entries)
    if unknown:  # files whose clip count cannot be read: what the card counts beyond the readable files
        clips += max(total - known, len(unknown))
    return Tally(entries, min(clips, total), total)


def check_share(dataset: str, t: Tally, max_share: float, early: bool = False) -> str:
    """'' when the quarantined share is at most ``max_share``; else the message (raised as
    :class:`QuarantineExceeded` when ``early``: the files unusable before any work already exceed it)."""
    if t.share <= max_share:
        return ""
    listing = "; ".join(f"{posixpath.basename(e['file'])}{'' if e['clip_id'] is None else ' ' + e['clip_id']}: "
                        f"{e['reason']}" for e in t.entries[:5])
    more = f" (and {len(t.entries) - 5} more)" if len(t.entries) > 5 else ""
    what = "raw file(s) cannot be used" if early else "entries were quarantined"
    msg = (f"{dataset}: {len(t.entries)} {what}, holding {t.clips} of {t.total} clips ({t.share:.0%}), above the "
           f"allowed preprocess.max_quarantine_share {max_share:.0%}: {listing}{more}")
    if early:
        raise QuarantineExceeded(msg)
    return msg
