"""Deterministic demo and district-scale data, bulk-loaded with COPY.

The same scale and anchor day always produce the same rows: every table draws from its own
`random.Random` seeded with a fixed string, so changing how one table is generated does not shift the
others. Timestamps are relative to the anchor (UTC midnight of the day the seed runs) so the data
always looks recent; `seed()` takes the anchor as a parameter.

Ids are set explicitly (rows reference each other before PostgreSQL could hand ids out) and the
sequences are moved past them afterwards, so later inserts never collide. Scores are generated in
chunks straight into COPY, which keeps memory flat at district scale; best_scores and
students.last_active_at are derived from them in SQL.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from hashlib import sha256
from itertools import islice
from typing import Any

import asyncpg
from tqdm import tqdm

from mlc_graph.platform.config import Settings
from mlc_graph.platform.migrate import ensure_score_partitions, migrate

SEED = "mlc-graph-seed-v1"
CHUNK_ROWS = 50_000
# A student in twenty is inactive (left the school, paused lessons): a fixed rule, so counts are exact.
INACTIVE_EVERY = 20
CHALLENGE_SHARE = 0.4


@dataclass(frozen=True, slots=True)
class Scale:
    """How much data to generate; `scores` is the exact total, spread over the last `months` months."""

    name: str
    organizations: int
    teachers_per_org: int
    students_per_teacher: int
    games: int
    assignments_per_student: int
    scores: int
    months: int
    org_name: str | None = None  # a fixed name for a single-organization scale

    @property
    def teachers(self) -> int:
        return self.organizations * self.teachers_per_org

    @property
    def students(self) -> int:
        return self.teachers * self.students_per_teacher

    @property
    def assignments(self) -> int:
        return self.students * self.assignments_per_student


DEMO = Scale(
    name="demo",
    organizations=1,
    teachers_per_org=3,
    students_per_teacher=20,
    games=200,
    assignments_per_student=10,
    scores=6_000,
    months=6,
    org_name="Riverside Music Academy",
)
DISTRICT = Scale(
    name="district",
    organizations=50,
    teachers_per_org=10,
    students_per_teacher=40,
    games=2_000,
    assignments_per_student=10,
    scores=2_000_000,
    months=12,
)
SCALES: dict[str, Scale] = {"demo": DEMO, "district": DISTRICT}

# Every table the seed writes, parents first (COPY order); truncated together by --reset.
TABLES = (
    "organizations",
    "teachers",
    "students",
    "categories",
    "levels",
    "games",
    "assignments",
    "scores",
    "best_scores",
    "badges",
    "student_badges",
)
# The columns each COPY writes, in the order the generators below yield them.
COLUMNS: dict[str, tuple[str, ...]] = {
    "organizations": ("id", "name", "tier", "seat_count", "created_at"),
    "teachers": ("id", "org_id", "first_name", "last_name", "email", "password_hash", "created_at"),
    "students": (
        "id", "org_id", "teacher_id", "first_name", "last_name", "username", "email", "avatar_url", "status",
        "password_hash", "created_at",
    ),
    "categories": ("id", "name", "description"),
    "levels": ("id", "name", "position"),
    "games": (
        "id", "title", "description", "category_id", "level_id", "difficulty", "status", "thumbnail_url",
        "min_score", "max_score", "created_at",
    ),
    "assignments": (
        "id", "org_id", "student_id", "game_id", "teacher_id", "status", "due_date", "created_at",
        "completed_at",
    ),
    "scores": ("id", "org_id", "student_id", "game_id", "score", "stage", "created_at"),
    "badges": ("id", "name", "description", "icon_url"),
    "student_badges": ("student_id", "badge_id", "org_id", "awarded_at"),
}  # fmt: skip
_ID_TABLES = (
    "organizations",
    "teachers",
    "students",
    "categories",
    "levels",
    "games",
    "assignments",
    "scores",
    "badges",
)

# Built from the fixed table names above, never from input.
SELECT_HAS_ROWS = "SELECT " + " OR ".join(f"EXISTS (SELECT 1 FROM {t})" for t in TABLES)  # noqa: S608
TRUNCATE_ALL = f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"
TRUNCATE_CHANGES = "TRUNCATE sync_changes"
# Move each id sequence past the explicit ids (is_called false on an empty table: next id is 1).
SET_SEQUENCES = [
    f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE(max(id), 1), max(id) IS NOT NULL) FROM {t}"  # noqa: S608
    for t in _ID_TABLES
]
# The best challenge score per (game, student); ties go to the earliest score that reached it.
DERIVE_BEST_SCORES = """
INSERT INTO best_scores (game_id, student_id, org_id, teacher_id, score, achieved_at)
SELECT DISTINCT ON (sc.game_id, sc.student_id)
       sc.game_id, sc.student_id, st.org_id, st.teacher_id, sc.score, sc.created_at
FROM scores sc
JOIN students st ON st.id = sc.student_id
WHERE sc.stage = 'challenge'
ORDER BY sc.game_id, sc.student_id, sc.score DESC, sc.created_at, sc.id
"""
UPDATE_LAST_ACTIVE = """
UPDATE students st SET last_active_at = latest.at
FROM (SELECT student_id, max(created_at) AS at FROM scores GROUP BY student_id) AS latest
WHERE st.id = latest.student_id
"""
COUNT_DEFAULT_PARTITION = "SELECT count(*) FROM scores_default"
# Per-row foreign-key triggers are most of a district seed's time (four checks per assignment, each
# locking its parent row). Replica mode skips them for this transaction only; _verify_foreign_keys
# then checks every key once, set-based, before commit. Needs superuser (or GRANT SET ON PARAMETER).
SKIP_ROW_TRIGGERS = "SET LOCAL session_replication_role = replica"
# The foreign keys of the seeded tables, read from the catalogue so keys added later are covered too.
SELECT_FOREIGN_KEYS = """
SELECT c.conname,
       c.conrelid::regclass::text AS child,
       c.confrelid::regclass::text AS parent,
       array_agg(quote_ident(ca.attname) ORDER BY k.n) AS child_columns,
       array_agg(quote_ident(pa.attname) ORDER BY k.n) AS parent_columns
FROM pg_constraint c
CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(child_att, parent_att, n)
JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = k.child_att
JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.parent_att
WHERE c.contype = 'f' AND c.conrelid = ANY($1::regclass[])
GROUP BY c.oid, c.conname, c.conrelid, c.confrelid
ORDER BY c.conname
"""
ANALYZE = f"ANALYZE {', '.join(TABLES)}"

FIRST_NAMES = (
    "Ava", "Liam", "Maya", "Noah", "Zoe", "Ethan", "Chloe", "Lucas", "Amara", "Mateo", "Isla", "Kai",
    "Priya", "Oliver", "Sofia", "Elijah", "Hana", "Leo", "Nia", "Finn", "Aaliyah", "Theo", "Grace",
    "Omar", "Lily", "Diego", "Freya", "Jonah", "Mei", "Caleb", "Ines", "Felix", "Yara", "Ravi", "Clara",
    "Sami", "Elena", "Jasper", "Aisha", "Hugo", "Layla", "Milo", "Ruby", "Tariq", "Stella", "Arjun",
    "Nora", "Emil", "Leah", "Kofi", "Ivy", "Mason", "Zara", "Oscar", "Lena", "Dev", "Maeve", "Tomas",
)  # fmt: skip
LAST_NAMES = (
    "Martinez", "Nguyen", "Okafor", "Schmidt", "Patel", "Kowalski", "Johnson", "Rossi", "Tanaka",
    "Haddad", "Silva", "Andersen", "Kim", "Murphy", "Dubois", "Ibrahim", "Novak", "Garcia", "Chen",
    "Walker", "Costa", "Larsen", "Mensah", "Fischer", "Reyes", "Sato", "O'Brien", "Moreau", "Yilmaz",
    "Brooks", "Petrov", "Alvarez", "Singh", "Hughes", "Lindqvist", "Abara", "Bianchi", "Cohen", "Diaz",
    "Evans", "Fernandes", "Grant", "Holm", "Ito", "Jansen", "Khan", "Lopez", "Mwangi", "Nakamura",
)  # fmt: skip
TOWNS = (
    "Riverside", "Maple Grove", "Cedar Falls", "Oakridge", "Lakeview", "Harbor City", "Pine Hills",
    "Willow Creek", "Brookfield", "Summit", "Fairview", "Stonebridge", "Elmwood", "Clearwater",
    "Highland", "Silver Lake", "Northgate", "Westbrook", "Ashford", "Kingsley", "Meadowbank",
    "Redwood", "Bayside", "Hillcrest", "Foxborough",
)  # fmt: skip
SCHOOL_KINDS = ("Elementary", "Middle School", "Music Academy", "Conservatory Prep")
CATEGORIES = (
    ("Rhythm", "Clap, tap and count: pulse, subdivisions and syncopation."),
    ("Intervals", "Name and hear the distance between two notes."),
    ("Note Reading", "Read notes on the treble and bass staves, fast."),
    ("Chords", "Build and recognise triads, sevenths and inversions."),
    ("Scales", "Major, minor and modal scales, up and down."),
    ("Ear Training", "Sing back, match pitch and pick out melodies."),
    ("Key Signatures", "Sharps, flats and the circle of fifths."),
    ("Tempo", "Italian tempo markings and keeping a steady beat."),
)
CATEGORY_NOUNS = (
    ("Rhythm Rumble", "Beat Builder", "Drum Dash", "Syncopation Station", "Clap Along"),
    ("Interval Quest", "Step or Skip", "Leap Lab", "Interval Invaders", "Distance Detective"),
    ("Note Ninja", "Staff Sprint", "Clef Climb", "Ledger Line Leap", "Note Name Race"),
    ("Chord Champion", "Triad Tower", "Inversion Island", "Seventh Heaven", "Chord Crafter"),
    ("Scale Climber", "Mode Maze", "Scale Skater", "Tonic Trail", "Minor Mystery"),
    ("Echo Game", "Pitch Match", "Melody Detective", "Sing It Back", "Ear Explorer"),
    ("Circle of Fifths", "Sharp Shooter", "Flat Finder", "Key Keeper", "Signature Safari"),
    ("Tempo Tap", "Metronome Madness", "Allegro Adventure", "Steady Beat", "Largo Lane"),
)
ADJECTIVES = ("Super", "Mini", "Mega", "Speedy", "Cosmic", "Jazzy", "Classic", "Turbo", "Tiny", "Grand")
LEVELS = ("Beginner", "Elementary", "Intermediate", "Upper Intermediate", "Advanced")
# Difficulty follows the level, with the middle levels split between neighbours.
LEVEL_DIFFICULTIES = (
    ("BEGINNER",),
    ("BEGINNER", "INTERMEDIATE"),
    ("INTERMEDIATE",),
    ("INTERMEDIATE", "ADVANCED"),
    ("ADVANCED",),
)
DIFFICULTY_PENALTY = {"BEGINNER": 0.0, "INTERMEDIATE": 0.1, "ADVANCED": 0.2}
BADGES = (
    ("First Steps", "Played a first game."),
    ("Perfect Pitch", "Scored 1000 in an ear-training challenge."),
    ("Rhythm Master", "Ten rhythm challenges above 900."),
    ("Week Streak", "Practised seven days in a row."),
    ("Month Streak", "Practised thirty days in a row."),
    ("High Scorer", "Reached the top ten of a global leaderboard."),
    ("Chord Champion", "Completed every chord game of a level."),
    ("Scale Climber", "Played scales at every level."),
    ("Note Ninja", "Read 500 notes correctly."),
    ("Homework Hero", "Completed ten assignments before their due date."),
    ("Explorer", "Played a game in every category."),
    ("Comeback", "Beat a personal best by 200 points."),
)
ASSET_BASE = "https://assets.mlc.example"


@dataclass(frozen=True, slots=True)
class TableTiming:
    table: str
    rows: int
    seconds: float


@dataclass(slots=True)
class SeedReport:
    """What the seed wrote and how long each step took."""

    scale: str
    anchor: datetime
    tables: list[TableTiming] = field(default_factory=list)
    seconds: float = 0.0

    def rows(self, table: str) -> int:
        return sum(t.rows for t in self.tables if t.table == table)

    def lines(self) -> list[str]:
        out = [f"{t.table:<15} {t.rows:>10,} rows {t.seconds:8.2f}s" for t in self.tables]
        out.append(f"{'total':<15} {sum(t.rows for t in self.tables):>10,} rows {self.seconds:8.2f}s")
        return out


class DatabaseNotEmptyError(RuntimeError):
    """The seed refuses to mix its rows with existing data (use reset)."""


class SeedIntegrityError(RuntimeError):
    """Generated rows broke a constraint the database did not check row by row (a bug in this module)."""


@dataclass(frozen=True, slots=True)
class _Student:
    id: int
    org_id: int
    teacher_id: int
    created_at: datetime
    active: bool
    skill: float


@dataclass(frozen=True, slots=True)
class _Game:
    id: int
    created_at: datetime
    status: str
    penalty: float


@dataclass(slots=True)
class _Plan:
    """Everything later tables need to know about earlier ones (small even at district scale)."""

    scale: Scale
    anchor: datetime
    window_start: datetime
    org_ids: list[int] = field(default_factory=list)
    teachers: list[tuple[int, int]] = field(default_factory=list)  # (id, org_id)
    students: list[_Student] = field(default_factory=list)
    games: list[_Game] = field(default_factory=list)
    assigned: dict[int, list[int]] = field(default_factory=dict)  # student id -> game ids
    syllabus: dict[int, list[int]] = field(default_factory=dict)  # teacher id -> live game ids


def _rng(table: str) -> random.Random:
    return random.Random(f"{SEED}:{table}")  # reproducible fake data, not secrets


def _fake_hash(value: str) -> str:
    # Shaped like a real hash so leak tests look for something realistic; it matches no password.
    return "seed$" + sha256(value.encode()).hexdigest()


def _slug(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def anchor_for(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _at(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A whole second uniformly in [start, end)."""
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randrange(max(span, 1)))


def _organizations(plan: _Plan) -> Iterator[tuple[Any, ...]]:
    rng = _rng("organizations")
    scale = plan.scale
    seats = scale.teachers_per_org * scale.students_per_teacher
    for i in range(scale.organizations):
        org_id = i + 1
        if scale.org_name and scale.organizations == 1:
            name = scale.org_name
        else:
            town = TOWNS[i % len(TOWNS)]
            kind = SCHOOL_KINDS[(i // len(TOWNS)) % len(SCHOOL_KINDS)]
            name = f"{town} {kind}" + (f" {i // (len(TOWNS) * len(SCHOOL_KINDS)) + 1}" if i >= 100 else "")
        # ENSEMBLE: the only tier whose student cap is the seat count, and these schools outgrow 19.
        seat_count = seats + rng.randrange(10, 60)
        created = plan.window_start - timedelta(days=rng.randrange(60, 720))
        plan.org_ids.append(org_id)
        yield (org_id, name, "ENSEMBLE", seat_count, created)


def _teachers(plan: _Plan) -> Iterator[tuple[Any, ...]]:
    rng = _rng("teachers")
    teacher_id = 0
    for org_id in plan.org_ids:
        for _ in range(plan.scale.teachers_per_org):
            teacher_id += 1
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            email = f"{_slug(first)}.{_slug(last)}{teacher_id}@school{org_id}.mlc.example"
            created = plan.window_start - timedelta(days=rng.randrange(30, 365))
            plan.teachers.append((teacher_id, org_id))
            yield (teacher_id, org_id, first, last, email, _fake_hash(email), created)


def _students(plan: _Plan) -> Iterator[tuple[Any, ...]]:
    rng = _rng("students")
    student_id = 0
    usernames: dict[int, set[str]] = {}
    for teacher_id, org_id in plan.teachers:
        taken = usernames.setdefault(org_id, set())
        for _ in range(plan.scale.students_per_teacher):
            student_id += 1
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            base = f"{_slug(first)}.{_slug(last)}"
            username, n = base, 1
            while username in taken:
                n += 1
                username = f"{base}{n}"
            taken.add(username)
            active = student_id % INACTIVE_EVERY != 0
            created = plan.window_start - timedelta(days=rng.randrange(1, 200))
            skill = min(0.95, max(0.2, rng.gauss(0.62, 0.14)))
            plan.students.append(_Student(student_id, org_id, teacher_id, created, active, skill))
            avatar = f"{ASSET_BASE}/avatars/{rng.randrange(1, 49):02d}.png"
            email = f"{username}@students.school{org_id}.mlc.example"
            status = "active" if active else "inactive"
            yield (
                student_id, org_id, teacher_id, first, last, username, email, avatar, status,
                _fake_hash(username + str(org_id)), created,
            )  # fmt: skip


def _categories() -> Iterator[tuple[Any, ...]]:
    for i, (name, description) in enumerate(CATEGORIES, start=1):
        yield (i, name, description)


def _levels() -> Iterator[tuple[Any, ...]]:
    for i, name in enumerate(LEVELS, start=1):
        yield (i, name, i)


def _games(plan: _Plan) -> Iterator[tuple[Any, ...]]:
    rng = _rng("games")
    seen: dict[str, int] = {}
    oldest = plan.anchor - timedelta(days=3 * 365)
    for game_id in range(1, plan.scale.games + 1):
        category = rng.randrange(len(CATEGORIES))
        level = rng.randrange(len(LEVELS))
        difficulty = rng.choice(LEVEL_DIFFICULTIES[level])
        status = rng.choices(("live", "draft", "retired"), weights=(85, 10, 5))[0]
        title = f"{rng.choice(ADJECTIVES)} {rng.choice(CATEGORY_NOUNS[category])}"
        seen[title] = seen.get(title, 0) + 1
        if seen[title] > 1:
            title = f"{title} {seen[title]}"
        created = _at(rng, oldest, plan.anchor - timedelta(days=1))
        plan.games.append(_Game(game_id, created, status, DIFFICULTY_PENALTY[difficulty]))
        description = f"{CATEGORIES[category][0]} practice for {LEVELS[level].lower()} players."
        thumbnail = f"{ASSET_BASE}/games/{game_id}.png"
        yield (
            game_id, title, description, category + 1, level + 1, difficulty, status, thumbnail, 0, 1000,
            created,
        )  # fmt: skip


def _assignments(plan: _Plan) -> Iterator[tuple[Any, ...]]:
    rng = _rng("assignments")
    live = [g.id for g in plan.games if g.status == "live"]
    per_student = plan.scale.assignments_per_student
    # A teacher assigns from one syllabus, so a class shares games (class progress, class leaderboards).
    for teacher_id, _org in plan.teachers:
        plan.syllabus[teacher_id] = rng.sample(live, min(len(live), per_student + per_student // 2))
    today = plan.anchor.date()
    assignment_id = 0
    for student in plan.students:
        syllabus = plan.syllabus[student.teacher_id]
        games = rng.sample(syllabus, min(per_student, len(syllabus)))
        plan.assigned[student.id] = games
        for game_id in games:
            assignment_id += 1
            status = rng.choices(("completed", "active", "archived"), weights=(45, 40, 15))[0]
            completed_at = None
            if status == "active":
                due = today + timedelta(days=rng.randrange(0, 28))
            elif status == "completed":
                due = today - timedelta(days=rng.randrange(1, 120))
            else:
                due = today - timedelta(days=rng.randrange(60, 300))
            due_at = anchor_for(due)
            created = due_at - timedelta(days=rng.randrange(7, 22), hours=rng.randrange(8, 16))
            if status == "completed":
                completed_at = due_at - timedelta(hours=rng.randrange(1, 24 * 6))
            yield (
                assignment_id, student.org_id, student.id, game_id, student.teacher_id, status, due,
                created, completed_at,
            )  # fmt: skip


def _score_counts(plan: _Plan, rng: random.Random) -> list[int]:
    """Split the exact total over students by activity (largest remainder keeps the sum exact)."""
    weights = [(rng.uniform(0.4, 1.6) if s.active else 0.1) for s in plan.students]
    total_weight = sum(weights)
    raw = [plan.scale.scores * w / total_weight for w in weights]
    counts = [int(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (raw[i] - counts[i], -i), reverse=True)
    for i in by_remainder[: plan.scale.scores - sum(counts)]:
        counts[i] += 1
    return counts


def _scores(plan: _Plan) -> Iterator[tuple[Any, ...]]:
    rng = _rng("scores")
    games = {g.id: g for g in plan.games}
    playable = [g.id for g in plan.games if g.status != "draft"]
    # A few games are everyone's favourites, which fills their global leaderboards.
    popular = playable[: max(1, len(playable) // 10)]
    window = plan.anchor - plan.window_start
    score_id = 0
    for student, count in zip(plan.students, _score_counts(plan, rng), strict=True):
        extras = rng.sample(popular, min(4, len(popular))) + rng.sample(playable, min(2, len(playable)))
        # Assigned games weigh three times as much as the student's own picks.
        pool = plan.assigned.get(student.id, []) * 3 + extras
        for _ in range(count):
            game = games[pool[int(rng.random() * len(pool))]]
            start = max(plan.window_start, game.created_at, student.created_at)
            created = _at(rng, start, plan.anchor)
            progress = (created - plan.window_start) / window
            mean = (student.skill - game.penalty + 0.1 * progress) * 1000
            score = round(min(1000.0, max(0.0, rng.gauss(mean, 120))) / 5) * 5
            stage = "challenge" if rng.random() < CHALLENGE_SHARE else "practice"
            score_id += 1
            yield (score_id, student.org_id, student.id, game.id, score, stage, created)


def _badges() -> Iterator[tuple[Any, ...]]:
    for i, (name, description) in enumerate(BADGES, start=1):
        yield (i, name, description, f"{ASSET_BASE}/badges/{_slug(name)}.svg")


def _student_badges(plan: _Plan) -> Iterator[tuple[Any, ...]]:
    rng = _rng("student_badges")
    badge_ids = list(range(1, len(BADGES) + 1))
    for student in plan.students:
        earned = rng.randrange(0, 5) if student.active else rng.randrange(0, 2)
        for badge_id in sorted(rng.sample(badge_ids, earned)):
            yield (student.id, badge_id, student.org_id, _at(rng, plan.window_start, plan.anchor))


def _months_between(start: date, end: date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month


async def _copy(
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    total: int | None,
    progress: bool,
) -> TableTiming:
    """COPY rows in chunks, so a generator of millions never sits in memory at once.

    The next chunk is generated in a worker thread while PostgreSQL ingests the current one: the two
    take about as long each, and the event loop mostly waits on the socket meanwhile. Only one thread
    advances the generator at a time, so the rows (and their order) are the same as a plain loop's.
    """
    started = time.perf_counter()
    written = 0
    iterator = iter(rows)

    def take() -> list[tuple[Any, ...]]:
        return list(islice(iterator, CHUNK_ROWS))

    with tqdm(total=total, desc=f"{table:<15}", unit=" rows", file=sys.stderr, disable=not progress) as bar:
        chunk = await asyncio.to_thread(take)
        while chunk:
            following = asyncio.ensure_future(asyncio.to_thread(take))
            try:
                await conn.copy_records_to_table(table, records=chunk, columns=list(columns))
            except BaseException:
                # Let the generating thread finish before the error propagates (nothing else waits on it).
                await asyncio.wait([following])
                raise
            written += len(chunk)
            bar.update(len(chunk))
            chunk = await following
    return TableTiming(table, written, time.perf_counter() - started)


async def skip_row_triggers(conn: asyncpg.Connection) -> bool:
    """Turn per-row foreign-key checks off for the current transaction when allowed; True if they are."""
    try:
        # A savepoint, so a refusal leaves the seed's transaction usable; SET LOCAL outlives its release.
        async with conn.transaction():
            await conn.execute(SKIP_ROW_TRIGGERS)
    except asyncpg.InsufficientPrivilegeError:
        return False
    return True


def _orphans_sql(child: str, parent: str, child_columns: Sequence[str], parent_columns: Sequence[str]) -> str:
    # Identifiers come from the catalogue, already quoted (regclass::text, quote_ident); no input here.
    matches = " AND ".join(f"p.{pc} = c.{cc}" for cc, pc in zip(child_columns, parent_columns, strict=True))
    # MATCH SIMPLE: a row with any NULL key column references nothing.
    present = " AND ".join(f"c.{cc} IS NOT NULL" for cc in child_columns)
    return (
        f"SELECT count(*) FROM {child} AS c WHERE {present} "  # noqa: S608
        f"AND NOT EXISTS (SELECT 1 FROM {parent} AS p WHERE {matches})"
    )


async def verify_foreign_keys(conn: asyncpg.Connection, tables: Sequence[str] = TABLES) -> None:
    """Check every foreign key of `tables` in one anti-join each; raises SeedIntegrityError on orphans."""
    for key in await conn.fetch(SELECT_FOREIGN_KEYS, list(tables)):
        orphans: int = await conn.fetchval(
            _orphans_sql(key["child"], key["parent"], key["child_columns"], key["parent_columns"])
        )
        if orphans:
            raise SeedIntegrityError(f"{orphans} rows of {key['child']} break {key['conname']}")


async def is_empty(conn: asyncpg.Connection) -> bool:
    has_rows: bool = await conn.fetchval(SELECT_HAS_ROWS)
    return not has_rows


async def seed(
    conn: asyncpg.Connection,
    scale: Scale,
    *,
    reset: bool = False,
    anchor: datetime | None = None,
    progress: bool = True,
) -> SeedReport:
    """Load `scale` into a migrated database in one transaction; refuses a non-empty one unless reset."""
    started = time.perf_counter()
    anchor = anchor or anchor_for(datetime.now(UTC).date())
    window_start = anchor - timedelta(days=round(scale.months * 30.44))
    plan = _Plan(scale, anchor, window_start)
    report = SeedReport(scale.name, anchor)
    async with conn.transaction():
        if reset:
            await conn.execute(TRUNCATE_ALL)
        elif not await is_empty(conn):
            raise DatabaseNotEmptyError("the database already has data; seed with --reset to replace it")
        unchecked = await skip_row_triggers(conn)
        # Every month a score can land in needs its partition, or rows would fall into scores_default.
        back = _months_between(window_start.date(), anchor.date()) + 1
        await ensure_score_partitions(conn, today=anchor.date(), back=max(back, 24), ahead=3)

        steps: list[tuple[str, Iterable[tuple[Any, ...]], int | None]] = [
            ("organizations", _organizations(plan), scale.organizations),
            ("teachers", _teachers(plan), scale.teachers),
            ("students", _students(plan), scale.students),
            ("categories", _categories(), len(CATEGORIES)),
            ("levels", _levels(), len(LEVELS)),
            ("games", _games(plan), scale.games),
            ("assignments", _assignments(plan), scale.assignments),
            ("scores", _scores(plan), scale.scores),
            ("badges", _badges(), len(BADGES)),
            ("student_badges", _student_badges(plan), None),
        ]
        for table, rows, total in steps:
            report.tables.append(await _copy(conn, table, COLUMNS[table], rows, total, progress))

        step = time.perf_counter()
        status = await conn.execute(DERIVE_BEST_SCORES)
        report.tables.append(TableTiming("best_scores", int(status.split()[-1]), time.perf_counter() - step))
        step = time.perf_counter()
        await conn.execute(UPDATE_LAST_ACTIVE)
        for statement in SET_SEQUENCES:
            await conn.execute(statement)
        report.tables.append(TableTiming("last_active_at+sequences", 0, time.perf_counter() - step))
        # The seed is the base state every client fetches whole, not a change to sync: when its rows went
        # through the change-log triggers (no privilege to skip them), that history is dropped here.
        await conn.execute(TRUNCATE_CHANGES)
        misplaced: int = await conn.fetchval(COUNT_DEFAULT_PARTITION)
        if misplaced:
            raise SeedIntegrityError(f"{misplaced} scores fell into scores_default: a partition is missing")
        if unchecked:
            step = time.perf_counter()
            await verify_foreign_keys(conn)
            report.tables.append(TableTiming("foreign keys", 0, time.perf_counter() - step))
    step = time.perf_counter()
    # Fresh statistics, or the first queries plan against an empty-table estimate.
    await conn.execute(ANALYZE)
    report.tables.append(TableTiming("analyze", 0, time.perf_counter() - step))
    report.seconds = time.perf_counter() - started
    return report


async def _run(settings: Settings, scale: Scale, reset: bool) -> SeedReport:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn)
        # Bars only on a terminal: in a log or a pipe their redraws become mangled lines.
        return await seed(conn, scale, reset=reset, progress=sys.stderr.isatty())
    finally:
        await conn.close()


def seed_command(settings: Settings, scale: str, reset: bool) -> int:
    """`mlc-graph seed`: prints a timing line per table; exit code 1 when the database is not empty."""
    chosen = SCALES[scale]
    print(
        f"seeding {chosen.name}: {chosen.organizations:,} organizations, {chosen.teachers:,} teachers, "
        f"{chosen.students:,} students, {chosen.games:,} games, {chosen.assignments:,} assignments, "
        f"{chosen.scores:,} scores",
        flush=True,
    )
    try:
        report = asyncio.run(_run(settings, chosen, reset))
    except DatabaseNotEmptyError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"seed failed: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0
