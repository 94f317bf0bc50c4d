-- Issue 12, item 17: three of the product spec's indexes served no query (EXPLAIN at district scale).
-- Each is replaced by the index its query does use, or dropped where another one already serves it;
-- docs/DATA.md ("Indexes") says why, and tests/platform/test_index_use.py asserts every hot query's index.

-- The active roster (Teacher.students(status: ACTIVE)) pages alphabetically with a keyset. The spec's
-- (teacher_id, org_id) cannot give that order: for a page the planner read idx_students_teacher_name
-- and filtered the inactive out, or read the spec's index and sorted the class. This one serves the
-- pages in order (no sort, no filter) and the count (index-only). org_id adds nothing there: a
-- teacher belongs to one organization.
DROP INDEX idx_students_teacher_org;
CREATE INDEX idx_students_teacher_active_name ON students (teacher_id, last_name, first_name, id)
    WHERE status = 'active';

-- Its leading column repeats its own predicate: PostgreSQL leaves a clause the predicate implies out of
-- the index conditions, so `category_id = $1` meets a second column and the whole index is read. The
-- live games of a category are served by idx_games_live_category_created (the library page, in order)
-- and idx_games_category_difficulty_level (the count, index-only), both partial on status = 'live'.
DROP INDEX idx_games_status_category;

-- A board from raw history would read every monthly partition and every play of each student;
-- leaderboards read best_scores (one row per game and student) through idx_best_scores_*_rank. The
-- index only cost every challenge score a write in each partition.
DROP INDEX idx_scores_game_score_created;
