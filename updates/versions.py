"""Version tags: parse them, keep their scheme, and pick the newest allowed one.

A tag's *scheme* is its prefix, the number of numeric parts and its suffix: ``v1.2.3``,
``1.25-alpine`` and ``16`` belong to different schemes, and a container on ``1.25-alpine`` is only
ever offered another ``X.Y-alpine`` tag. Pre-releases (``-rc1``, ``-beta.2``...) are offered only
when asked for, and nothing older than the running version is ever proposed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from updates.choices import TrackingMode

_TAG_RE = re.compile(r"^(?P<prefix>[A-Za-z]*[-_.]?)(?P<numbers>\d+(?:\.\d+){0,3})(?P<rest>.*)$")
_PRE_RE = re.compile(r"^[-._+]?(?P<pre>(?:alpha|beta|rc|pre|preview|dev|snapshot|nightly|a|b|m)(?:[-._]?\d+)*)(?P<suffix>(?:[-_+].*)?)$",
                     re.IGNORECASE)
_PRE_ORDER = {"dev": 0, "snapshot": 0, "nightly": 0, "a": 1, "alpha": 1, "m": 2, "b": 3, "beta": 3, "pre": 4, "preview": 4, "rc": 5}


@dataclass(frozen=True)
class Version:
    tag: str
    prefix: str
    numbers: tuple[int, ...]
    prerelease: str
    suffix: str

    @property
    def scheme(self) -> tuple[str, int, str]:
        return (self.prefix.lower(), len(self.numbers), self.suffix.lower())

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def sort_key(self) -> tuple:
        if not self.prerelease:
            return (self.numbers, 1, 0, ())
        word = re.match(r"[A-Za-z]+", self.prerelease).group(0).lower()
        nums = tuple(int(n) for n in re.findall(r"\d+", self.prerelease))
        return (self.numbers, 0, _PRE_ORDER.get(word, 0), nums)


def parse_version(tag: str) -> Version | None:
    """A Version for tags that carry a version number, None for ``latest``, ``stable``, hashes..."""
    match = _TAG_RE.match(tag or "")
    if not match:
        return None
    prefix, numbers, rest = match.group("prefix"), match.group("numbers"), match.group("rest")
    if prefix and prefix.lower().rstrip("-_.") not in ("v", "version", "release", "r") and len(prefix.rstrip("-_.")) > 1:
        # "sha256abc", "build123": not a version scheme we can order safely.
        return None
    if rest and rest[0].isdigit():
        return None
    if len(numbers) >= 8 and "." not in numbers:
        return None  # a date stamp or build number (20240101), not a release
    prerelease, suffix = "", rest
    pre = _PRE_RE.match(rest)
    if rest and pre:
        prerelease, suffix = pre.group("pre"), pre.group("suffix")
    elif rest and rest[0] not in "-_+":
        return None
    return Version(tag=tag, prefix=prefix, numbers=tuple(int(n) for n in numbers.split(".")), prerelease=prerelease, suffix=suffix)


def _within_mode(candidate: Version, current: Version, mode: str) -> bool:
    if mode == TrackingMode.PATCH:
        # Only the last number may move; with fewer than three numbers there is no patch level.
        return len(current.numbers) >= 3 and candidate.numbers[:-1] == current.numbers[:-1]
    if mode == TrackingMode.MINOR:
        return len(current.numbers) >= 2 and candidate.numbers[:1] == current.numbers[:1]
    return mode in (TrackingMode.MAJOR, TrackingMode.LATEST)


def newest_allowed(current_tag: str, tags, mode: str, include_prerelease: bool = False) -> Version | None:
    """The newest tag strictly newer than `current_tag`, in its scheme and within `mode`."""
    current = parse_version(current_tag)
    if current is None or mode == TrackingMode.EXACT:
        return None
    best: Version | None = None
    for tag in tags:
        candidate = parse_version(tag)
        if candidate is None or candidate.scheme != current.scheme:
            continue
        if candidate.is_prerelease and not include_prerelease:
            continue
        if candidate.sort_key() <= current.sort_key():
            continue  # never a downgrade, never the same version under another spelling
        if not _within_mode(candidate, current, mode):
            continue
        if best is None or candidate.sort_key() > best.sort_key():
            best = candidate
    return best
