"""Breaking schema changes since the last release, and whether the changelog declares each.

`schema.graphql` is regenerated in the same commit as the code, so comparing the two proves only that
they agree. Clients depend on what was released: `schema.released.graphql`, copied from schema.graphql
deliberately at each release. A change graphql-core calls breaking between that snapshot and the code
must be declared in CHANGELOG.md's "## Unreleased" section, as a line
`- BREAKING: <graphql-core's description>` (the check prints the lines to add), so a breaking change
is a decision someone wrote down, not a side effect of regenerating a file.
"""

from __future__ import annotations

from graphql import build_schema, find_breaking_changes

UNRELEASED_HEADING = "## Unreleased"
DECLARATION = "- BREAKING: "


def breaking_changes(released_sdl: str, current_sdl: str) -> list[str]:
    """graphql-core's description of each breaking change from the released schema to the current one."""
    changes = find_breaking_changes(build_schema(released_sdl), build_schema(current_sdl))
    return [change.description for change in changes]


def declared_breaking_changes(changelog: str) -> set[str]:
    """The descriptions declared under "## Unreleased" (up to the next "## " heading)."""
    declared: set[str] = set()
    inside = False
    for line in changelog.splitlines():
        if line.startswith("## "):
            inside = line.strip() == UNRELEASED_HEADING
            continue
        if inside and line.startswith(DECLARATION):
            declared.add(line.removeprefix(DECLARATION).strip())
    return declared


def undeclared_breaking_changes(released_sdl: str, current_sdl: str, changelog: str) -> list[str]:
    """The changelog lines still missing: one per breaking change nobody declared."""
    declared = declared_breaking_changes(changelog)
    return [
        f"{DECLARATION}{description}"
        for description in breaking_changes(released_sdl, current_sdl)
        if description not in declared
    ]
