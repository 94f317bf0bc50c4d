"""The batching layer: one Loaders per request, each loader created on first use."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Sequence
from functools import cached_property, partial

from loaders.assignments import (
    AssignmentRow,
    count_assignments_by_students,
    fetch_assignment_pages_by_students,
    fetch_assignments_by_ids,
)
from loaders.badges import BadgeRow, EarnedBadgeRow, fetch_badges_by_ids, fetch_earned_badges_by_students
from loaders.base import Loader
from loaders.games import (
    CategoryRow,
    GameFilterArgs,
    GameRow,
    LevelRow,
    count_library,
    count_live_games_by_categories,
    fetch_categories_by_ids,
    fetch_game_pages_by_categories,
    fetch_games_by_ids,
    fetch_levels_by_ids,
    fetch_library_pages,
)
from loaders.organizations import OrganizationRow, fetch_organizations_by_ids
from loaders.pagination import Page, PageArgs
from loaders.scores import (
    BestScoreRow,
    ScoreRow,
    count_scores_by_students,
    fetch_best_scores,
    fetch_score_pages_by_students,
    fetch_scores_by_ids,
)
from loaders.students import (
    StudentRow,
    count_students_by_teachers,
    fetch_student_pages_by_teachers,
    fetch_students_by_ids,
)
from loaders.teachers import (
    TeacherRow,
    count_teachers_by_orgs,
    fetch_teacher_pages_by_orgs,
    fetch_teachers_by_ids,
)
from mlc_graph.platform.db import Executor


class Loaders:
    """Per-request DataLoaders; never shared between requests (their caches hold one viewer's reads)."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    @cached_property
    def students_by_id(self) -> Loader[int, StudentRow | None]:
        return Loader(self.db, fetch_students_by_ids)

    @cached_property
    def student_pages_by_teacher(self) -> Loader[tuple[int, PageArgs], Page[StudentRow]]:
        return Loader(self.db, fetch_student_pages_by_teachers)

    @cached_property
    def student_count_by_teacher(self) -> Loader[tuple[int, Hashable], int]:
        return Loader(self.db, count_students_by_teachers)

    @cached_property
    def teachers_by_id(self) -> Loader[int, TeacherRow | None]:
        return Loader(self.db, fetch_teachers_by_ids)

    @cached_property
    def teacher_pages_by_org(self) -> Loader[tuple[int, PageArgs], Page[TeacherRow]]:
        return Loader(self.db, fetch_teacher_pages_by_orgs)

    @cached_property
    def teacher_count_by_org(self) -> Loader[int, int]:
        return Loader(self.db, count_teachers_by_orgs)

    @cached_property
    def organizations_by_id(self) -> Loader[int, OrganizationRow | None]:
        return Loader(self.db, fetch_organizations_by_ids)

    @cached_property
    def _references(self) -> Callable[[Sequence[CategoryRow], Sequence[LevelRow]], None]:
        # The game loaders call back into these Loaders through a weak reference: a bound method would
        # close a cycle (Loaders -> loader -> partial -> Loaders), and then nothing a request loaded
        # (rows, pages, futures) is freed when the request ends, only by the cycle collector, in pauses
        # of 30-40 ms every 50,000 objects (the 1-client p95 of the dashboard, docs/PERFORMANCE.md).
        loaders = weakref.ref(self)

        def prime(categories: Sequence[CategoryRow], levels: Sequence[LevelRow]) -> None:
            owner = loaders()
            if owner is not None:
                owner._prime_references(categories, levels)

        return prime

    def _prime_references(self, categories: Sequence[CategoryRow], levels: Sequence[LevelRow]) -> None:
        """Categories and levels that came with games (loaders.games joins them): no statements of theirs."""
        for category in categories:
            self.categories_by_id.prime(category.id, category)
        for level in levels:
            self.levels_by_id.prime(level.id, level)

    @cached_property
    def games_by_id(self) -> Loader[int, GameRow | None]:
        return Loader(self.db, partial(fetch_games_by_ids, references=self._references))

    @cached_property
    def categories_by_id(self) -> Loader[int, CategoryRow | None]:
        return Loader(self.db, fetch_categories_by_ids)

    @cached_property
    def levels_by_id(self) -> Loader[int, LevelRow | None]:
        return Loader(self.db, fetch_levels_by_ids)

    @cached_property
    def library_pages(self) -> Loader[tuple[Hashable, PageArgs], Page[GameRow]]:
        return Loader(self.db, partial(fetch_library_pages, references=self._references))

    @cached_property
    def library_count(self) -> Loader[GameFilterArgs, int]:
        return Loader(self.db, count_library)

    @cached_property
    def game_pages_by_category(self) -> Loader[tuple[int, PageArgs], Page[GameRow]]:
        return Loader(self.db, partial(fetch_game_pages_by_categories, references=self._references))

    @cached_property
    def live_game_count_by_category(self) -> Loader[int, int]:
        return Loader(self.db, count_live_games_by_categories)

    @cached_property
    def assignments_by_id(self) -> Loader[int, AssignmentRow | None]:
        return Loader(self.db, fetch_assignments_by_ids)

    @cached_property
    def assignment_pages_by_student(self) -> Loader[tuple[int, PageArgs], Page[AssignmentRow]]:
        return Loader(self.db, fetch_assignment_pages_by_students)

    @cached_property
    def assignment_count_by_student(self) -> Loader[tuple[int, Hashable], int]:
        return Loader(self.db, count_assignments_by_students)

    @cached_property
    def scores_by_id(self) -> Loader[int, ScoreRow | None]:
        return Loader(self.db, fetch_scores_by_ids)

    @cached_property
    def badges_by_id(self) -> Loader[int, BadgeRow | None]:
        return Loader(self.db, fetch_badges_by_ids)

    @cached_property
    def score_pages_by_student(self) -> Loader[tuple[int, PageArgs], Page[ScoreRow]]:
        return Loader(self.db, fetch_score_pages_by_students)

    @cached_property
    def score_count_by_student(self) -> Loader[tuple[int, Hashable], int]:
        return Loader(self.db, count_scores_by_students)

    @cached_property
    def best_score_by_student_game(self) -> Loader[tuple[int, int], BestScoreRow | None]:
        return Loader(self.db, fetch_best_scores)

    @cached_property
    def earned_badges_by_student(self) -> Loader[int, list[EarnedBadgeRow]]:
        return Loader(self.db, fetch_earned_badges_by_students)

    def clear_all(self) -> None:
        """Forget every cached read, so a mutation's payload reads its own writes."""
        for name in list(vars(self)):
            value = vars(self)[name]
            if isinstance(value, Loader):
                value.clear_all()
