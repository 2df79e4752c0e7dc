"""Name patterns in alert rules, limited to a subset that cannot backtrack catastrophically.

Python's `re` has no timeout, and evaluation runs in the monitor and in workers: one pattern
such as `(a+)+$` against a long name would stall them. Patterns are therefore short, names are
cut to NAME_LIMIT characters, and the parsed pattern is refused when a repeated group holds
another unbounded repeat or an alternation (the shapes behind exponential backtracking), or
uses backreferences or lookarounds.
"""

from __future__ import annotations

import re
from functools import lru_cache

try:  # Python 3.11+
    from re import _constants as sre_constants
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

MAX_LENGTH = 200
NAME_LIMIT = 255
_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, getattr(sre_constants, "POSSESSIVE_REPEAT", None)}
_FORBIDDEN = {sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS, sre_constants.ASSERT, sre_constants.ASSERT_NOT}


class UnsafePattern(ValueError):
    pass


def _walk(items, inside_repeat: bool) -> None:
    for op, arg in items:
        if op in _FORBIDDEN:
            raise UnsafePattern("backreferences and lookarounds are not allowed")
        if op in _REPEATS:
            low, high, sub = arg
            unbounded = high == sre_constants.MAXREPEAT or high > 100
            if inside_repeat and unbounded:
                raise UnsafePattern("a repeated group must not contain another unbounded repeat (e.g. (a+)+)")
            _walk(sub, inside_repeat or unbounded)
        elif op == sre_constants.SUBPATTERN:
            _walk(arg[-1], inside_repeat)
        elif op == sre_constants.BRANCH:
            if inside_repeat:
                raise UnsafePattern("alternatives (a|b) must not be repeated without bound")
            for branch in arg[1]:
                _walk(branch, inside_repeat)
        elif op == getattr(sre_constants, "ATOMIC_GROUP", None):
            _walk(arg, inside_repeat)


def validate(pattern: str) -> str:
    """Return the pattern if it is safe and valid; raise UnsafePattern (a ValueError) otherwise."""
    if len(pattern) > MAX_LENGTH:
        raise UnsafePattern(f"at most {MAX_LENGTH} characters")
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        raise UnsafePattern(f"not a valid regular expression: {exc}") from None
    _walk(parsed, False)
    return pattern


@lru_cache(maxsize=512)
def compiled(pattern: str) -> re.Pattern | None:
    try:
        return re.compile(validate(pattern))
    except ValueError:
        return None


def matches(pattern: str, name: str) -> bool:
    """Does `name` match? An unsafe or invalid pattern (stored before a check existed) matches nothing."""
    if not pattern:
        return True
    regex = compiled(pattern)
    return bool(regex and regex.search((name or "")[:NAME_LIMIT]))
