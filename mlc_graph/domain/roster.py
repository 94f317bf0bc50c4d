"""Student roster CSV: header check and per-row validation, with no I/O (the GraphQL and CLI paths share it).

Row numbers are what a spreadsheet shows: the header is row 1, the first student row 2. Every problem
is collected before anything is written, so a teacher fixes the whole file in one pass.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

REQUIRED_COLUMNS = ("first_name", "last_name", "username")
OPTIONAL_COLUMNS = ("email",)
MAX_ROWS = 50_000
MAX_NAME_LENGTH = 100
MAX_EMAIL_LENGTH = 254
# Usernames are what students type on a tablet: short, lower-case, no spaces.
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{2,39}")
# Deliberately loose: one @, something on each side, a dot in the domain. Delivery is the real check.
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True, slots=True)
class StudentInput:
    """One valid roster row, normalised (trimmed; username and email lower-cased)."""

    row: int
    first_name: str
    last_name: str
    username: str
    email: str | None


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    column: str | None
    message: str


class HeaderError(ValueError):
    """The header row is missing, or names columns that are missing or unknown."""

    def __init__(self, message: str, missing: list[str], unknown: list[str]) -> None:
        super().__init__(message)
        self.missing = missing
        self.unknown = unknown


@dataclass(frozen=True, slots=True)
class ParsedRoster:
    students: list[StudentInput]
    errors: list[RowError]


def check_header(header: list[str]) -> list[str]:
    """The normalised column names; HeaderError naming every missing and unknown column otherwise."""
    columns = [name.strip().lower() for name in header]
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    unknown = [name for name in columns if name not in known]
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    problems = []
    if missing:
        problems.append("missing column(s): " + ", ".join(missing))
    if unknown:
        problems.append("unknown column(s): " + ", ".join(repr(name) for name in unknown))
    if duplicated:
        problems.append("repeated column(s): " + ", ".join(duplicated))
    if problems:
        expected = ", ".join(REQUIRED_COLUMNS) + " and optionally " + ", ".join(OPTIONAL_COLUMNS)
        raise HeaderError(f"CSV header: {'; '.join(problems)} (expected {expected})", missing, unknown)
    return columns


def _name_errors(row: int, column: str, value: str) -> list[RowError]:
    if not value:
        return [RowError(row, column, "is required")]
    if len(value) > MAX_NAME_LENGTH:
        return [RowError(row, column, f"is longer than {MAX_NAME_LENGTH} characters")]
    return []


def validate_row(row: int, values: dict[str, str], seen: dict[str, int]) -> StudentInput | list[RowError]:
    """A valid student, or every problem of this row. `seen` maps usernames to the row that used them."""
    first = values.get("first_name", "").strip()
    last = values.get("last_name", "").strip()
    username = values.get("username", "").strip().lower()
    email = values.get("email", "").strip().lower() or None
    errors = _name_errors(row, "first_name", first) + _name_errors(row, "last_name", last)
    if not username:
        errors.append(RowError(row, "username", "is required"))
    elif not USERNAME.fullmatch(username):
        errors.append(
            RowError(row, "username", "must be 3-40 characters of a-z, 0-9, '.', '_' or '-', starting alnum")
        )
    elif username in seen:
        errors.append(RowError(row, "username", f"repeats the username of row {seen[username]}"))
    if email is not None and (len(email) > MAX_EMAIL_LENGTH or not EMAIL.fullmatch(email)):
        errors.append(RowError(row, "email", "is not an email address"))
    if errors:
        return errors
    seen[username] = row
    return StudentInput(row, first, last, username, email)


def parse_roster(text: str, max_rows: int = MAX_ROWS) -> ParsedRoster:
    """Every valid student and every row error of a roster; HeaderError when the header is wrong."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    header = next(reader, None)
    if header is None or not any(cell.strip() for cell in header):
        raise HeaderError(
            "CSV is empty: the first line must name the columns " + ", ".join(REQUIRED_COLUMNS),
            list(REQUIRED_COLUMNS),
            [],
        )
    columns = check_header(header)
    students: list[StudentInput] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    rows = 0
    try:
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue  # blank lines (often a trailing one) are not rows
            rows += 1
            if rows > max_rows:
                errors.append(RowError(number, None, f"the file has more than {max_rows} rows"))
                break
            if len(cells) != len(columns):
                errors.append(RowError(number, None, f"has {len(cells)} cells, the header {len(columns)}"))
                continue
            found = validate_row(number, dict(zip(columns, cells, strict=True)), seen)
            if isinstance(found, StudentInput):
                students.append(found)
            else:
                errors.extend(found)
    except csv.Error as exc:
        errors.append(RowError(reader.line_num, None, f"is not valid CSV: {exc}"))
    return ParsedRoster(students, errors)
