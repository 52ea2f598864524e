"""Do the broker's ACL and the routes agree on who a device is? (`ingestd check --acl`)

A route takes a device's name from a topic level (its `identity`, {device} by default). The
broker decides who may publish there: a Mosquitto ACL pattern such as `pattern write
sensors/%u/+` lets each account publish only where that level is its own name. Where a pattern
lets an account choose the level a route reads the identity from (`sensors/%u/#` against a
route `{site}/{system}/{device}/data`: `device-1` publishes `sensors/device-1/device-2/data`),
one account can write points tagged as another device. This module finds such pairs, from the
ACL file alone: it reads `pattern write|readwrite` lines (per-account rules: %u is the account's
user name, %c its client id) and compares their levels with each route's template.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ingestd.routes import Route

ACCOUNT_LEVELS = ("%u", "%c")  # the account's user name, its client id


@dataclass(frozen=True, slots=True)
class Disagreement:
    pattern: str
    route: Route
    why: str

    def __str__(self) -> str:
        return f"acl pattern {self.pattern!r} and route {self.route.template.text!r}: {self.why}"


def account_write_patterns(acl: str) -> list[str]:
    """The topic of each `pattern write` / `pattern readwrite` line (Mosquitto's acl_file)."""
    patterns = []
    for raw in acl.splitlines():
        words = raw.split(None, 2)
        if len(words) == 3 and words[0] == "pattern" and words[1] in ("write", "readwrite"):
            patterns.append(words[2].strip())
        elif len(words) == 2 and words[0] == "pattern":  # `pattern <topic>`: readwrite
            patterns.append(words[1].strip())
    return patterns


def _level_overlaps(pattern_level: str, literal: str | None) -> bool:
    return pattern_level in ("+", *ACCOUNT_LEVELS) or literal is None or pattern_level == literal


def disagreement(pattern: str, route: Route) -> str | None:
    """Why an account allowed by `pattern` could write on `route` as someone else; None if it
    cannot (no topic of the pattern matches the route, or the route's identity level is the
    account's own)."""
    levels = pattern.split("/")
    template = route.template
    width = len(template.literals)
    # the levels a topic of both has; '#' in either covers the rest of the other
    ends_open = levels[-1] == "#"
    fixed = levels[:-1] if ends_open else levels
    if not ends_open and len(fixed) < width:
        return None
    if not template.rest and len(fixed) > width:
        return None
    for pattern_level, literal in zip(fixed, template.literals, strict=False):
        if not _level_overlaps(pattern_level, literal):
            return None
    if route.identity is None:
        return (
            "an account may publish on this route, and its points do not say which device "
            "sent them: set the route's identity to the level the pattern fixes"
        )
    at = template.names.index(route.identity)
    own = fixed[at] if at < len(fixed) else "#"
    if own in ACCOUNT_LEVELS:
        return None
    return (
        f"the route reads its identity {{{route.identity}}} from level {at + 1}, which the "
        f"pattern lets an account choose ({own!r}): one account can write as another device. "
        f"Make the pattern fix that level to the account (%u), or narrow it so it cannot reach "
        "this route"
    )


def check_acl(path: Path, routes: list[Route]) -> list[Disagreement]:
    found = []
    for pattern in account_write_patterns(path.read_text()):
        for route in routes:
            why = disagreement(pattern, route)
            if why is not None:
                found.append(Disagreement(pattern, route, why))
    return found
