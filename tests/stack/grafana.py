"""What Grafana does to an InfluxQL panel query before it reaches the database, for the stack
rehearsal: `$timeFilter`, `$__interval` and template variables expanded as Grafana's InfluxDB
datasource expands them (public/app/plugins/datasource/influxdb: interpolateQueryExpr).

- A multi-value or include-All variable used in a regex: each value regex-escaped, several
  joined as `(a|b)`, one alone as itself.
- "All" with a custom all value: that value as written, not escaped (".*").
- "All" without one: every value of the variable's query, as for a multi-value selection.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

TIME_FILTER = "time >= now() - 15m and time <= now()"
INTERVAL = "10s"  # the datasource's timeInterval, the floor of $__interval
ALL = object()  # select "All"

_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]/])")


def escape_regex(value: str) -> str:
    return _REGEX_SPECIAL.sub(r"\\\1", value)


def variable_value(variable: dict[str, Any], selected: list[str] | object) -> str:
    """The text `$name` becomes, for `selected` values (or ALL, given every value)."""
    if selected is ALL:
        raise ValueError("resolve ALL with the variable's own values first")
    assert isinstance(selected, list)
    escaped = [escape_regex(v) for v in selected]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def expand(query: str, values: dict[str, str]) -> str:
    """`query` with Grafana's macros and the variables' texts substituted."""
    query = query.replace("$timeFilter", TIME_FILTER).replace("$__interval", INTERVAL)
    for name in sorted(values, key=len, reverse=True):  # $device before $dev
        query = query.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    assert not re.search(r"\$\{?\w", query), f"a variable left unexpanded: {query}"
    return query


def resolve(
    variables: list[dict[str, Any]],
    choose: Callable[[dict[str, Any], list[str]], list[str] | object],
    run: Callable[[str], list[dict[str, Any]]],
) -> dict[str, str]:
    """Each query variable in order (a later one may use an earlier one): its options from
    `run` (SHOW ... results), then the text for what `choose` selects among them."""
    values: dict[str, str] = {}
    for variable in variables:
        if variable["type"] != "query":
            continue
        series = run(expand(variable["query"], values))
        options = sorted({str(row[-1]) for s in series for row in s.get("values", [])})
        assert options, f"variable {variable['name']} has no values"
        selected = choose(variable, options)
        if selected is ALL:
            custom = variable.get("allValue")
            values[variable["name"]] = custom if custom else variable_value(variable, options)
        else:
            values[variable["name"]] = variable_value(variable, selected)
    return values
