-- Delta sync (issue 15): a log of every change to what a client may hold, written by triggers in the
-- transaction of the write itself, so no write path (mutation, CLI, an operator's SQL) can forget it.
--
-- Order and exactness: each row carries the writing transaction's id (xid8, never wraps) and a sequence
-- number. Readers deliver rows ordered by (xid, seq) and only below the xmin of their own statement's
-- snapshot: every transaction with a smaller xid has ended, so that prefix of the log can never grow
-- again. A bigint sequence alone would not do: a transaction that took seq 10 can commit after one
-- that took seq 11 has been read. See loaders/changes.py and docs/DATA.md.
--
-- Scope columns are fixed at write time: org_id (0 for the shared game catalogue), the student the
-- change is about and that student's teacher then. A student who moves class leaves a tombstone in the
-- old teacher's scope (student_id null there, so the student's own feed does not see it).
CREATE TABLE sync_changes (
    seq        bigserial,
    xid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    org_id     bigint NOT NULL,
    teacher_id bigint,
    student_id bigint,
    entity     text NOT NULL
        CHECK (entity IN ('Assignment', 'Score', 'BestScore', 'EarnedBadge', 'Student', 'Game')),
    -- Assignment, Score, Student and Game: their id; BestScore: the game; EarnedBadge: the badge.
    entity_id  bigint NOT NULL,
    -- A score's created_at, so that the reader's join to scores can prune its partitions.
    entity_at  timestamptz,
    tombstone  boolean NOT NULL DEFAULT false,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (seq, changed_at)
) PARTITION BY RANGE (changed_at);
-- Partitions by month are created ahead (migrate, maintain) and dropped once older than the retention
-- window (maintain); the default partition only keeps a write from failing if maintenance fell behind.
CREATE TABLE sync_changes_default PARTITION OF sync_changes DEFAULT;
CREATE INDEX idx_sync_changes_org ON sync_changes (org_id, xid, seq);
CREATE INDEX idx_sync_changes_teacher ON sync_changes (teacher_id, xid, seq) WHERE teacher_id IS NOT NULL;
CREATE INDEX idx_sync_changes_student ON sync_changes (student_id, xid, seq) WHERE student_id IS NOT NULL;

-- One statement-level trigger per table and event (transition tables allow one event per trigger):
-- a write of 10,000 rows runs each function once, as one INSERT ... SELECT.

CREATE FUNCTION sync_scores_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id, entity_at)
        SELECT n.org_id, s.teacher_id, n.student_id, 'Score', n.id, n.created_at
        FROM new_rows n LEFT JOIN students s ON s.id = n.student_id
        ORDER BY n.id;
    ELSE
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id, entity_at, tombstone)
        SELECT o.org_id, s.teacher_id, o.student_id, 'Score', o.id, o.created_at, true
        FROM old_rows o LEFT JOIN students s ON s.id = o.student_id
        ORDER BY o.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sync_scores_inserted AFTER INSERT ON scores
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_scores_changed();
CREATE TRIGGER sync_scores_deleted AFTER DELETE ON scores
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_scores_changed();

-- An archived assignment is a tombstone (the apps list active and completed ones); reactivating it is
-- an upsert again.
CREATE FUNCTION sync_assignments_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id, tombstone)
        SELECT n.org_id, s.teacher_id, n.student_id, 'Assignment', n.id, n.status = 'archived'
        FROM new_rows n LEFT JOIN students s ON s.id = n.student_id
        ORDER BY n.id;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id, tombstone)
        SELECT n.org_id, s.teacher_id, n.student_id, 'Assignment', n.id, n.status = 'archived'
        FROM new_rows n JOIN old_rows o ON o.id = n.id LEFT JOIN students s ON s.id = n.student_id
        WHERE n IS DISTINCT FROM o
        ORDER BY n.id;
    ELSE
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id, tombstone)
        SELECT o.org_id, s.teacher_id, o.student_id, 'Assignment', o.id, true
        FROM old_rows o LEFT JOIN students s ON s.id = o.student_id
        ORDER BY o.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sync_assignments_inserted AFTER INSERT ON assignments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_assignments_changed();
CREATE TRIGGER sync_assignments_updated AFTER UPDATE ON assignments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sync_assignments_changed();
CREATE TRIGGER sync_assignments_deleted AFTER DELETE ON assignments
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_assignments_changed();

CREATE FUNCTION sync_best_scores_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id)
        SELECT n.org_id, n.teacher_id, n.student_id, 'BestScore', n.game_id
        FROM new_rows n ORDER BY n.student_id, n.game_id;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id)
        SELECT n.org_id, n.teacher_id, n.student_id, 'BestScore', n.game_id
        FROM new_rows n JOIN old_rows o ON (o.game_id, o.student_id) = (n.game_id, n.student_id)
        WHERE n IS DISTINCT FROM o
        ORDER BY n.student_id, n.game_id;
    ELSE
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id, tombstone)
        SELECT o.org_id, o.teacher_id, o.student_id, 'BestScore', o.game_id, true
        FROM old_rows o ORDER BY o.student_id, o.game_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sync_best_scores_inserted AFTER INSERT ON best_scores
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_best_scores_changed();
CREATE TRIGGER sync_best_scores_updated AFTER UPDATE ON best_scores
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sync_best_scores_changed();
CREATE TRIGGER sync_best_scores_deleted AFTER DELETE ON best_scores
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_best_scores_changed();

CREATE FUNCTION sync_student_badges_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id)
        SELECT n.org_id, s.teacher_id, n.student_id, 'EarnedBadge', n.badge_id
        FROM new_rows n LEFT JOIN students s ON s.id = n.student_id
        ORDER BY n.student_id, n.badge_id;
    ELSE
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id, tombstone)
        SELECT o.org_id, s.teacher_id, o.student_id, 'EarnedBadge', o.badge_id, true
        FROM old_rows o LEFT JOIN students s ON s.id = o.student_id
        ORDER BY o.student_id, o.badge_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sync_student_badges_inserted AFTER INSERT ON student_badges
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_student_badges_changed();
CREATE TRIGGER sync_student_badges_deleted AFTER DELETE ON student_badges
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_student_badges_changed();

-- Only what the API shows counts as a change of a student (not the password hash or the email), and a
-- move to another class is a tombstone in the old teacher's scope before the upsert in the new one.
CREATE FUNCTION sync_students_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id)
        SELECT n.org_id, n.teacher_id, n.id, 'Student', n.id FROM new_rows n ORDER BY n.id;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id, tombstone)
        SELECT o.org_id, o.teacher_id, NULL, 'Student', o.id, true
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.teacher_id IS DISTINCT FROM o.teacher_id
        ORDER BY o.id;
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id)
        SELECT n.org_id, n.teacher_id, n.id, 'Student', n.id
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE (n.org_id, n.teacher_id, n.first_name, n.last_name, n.username, n.avatar_url, n.status,
               n.last_active_at)
              IS DISTINCT FROM
              (o.org_id, o.teacher_id, o.first_name, o.last_name, o.username, o.avatar_url, o.status,
               o.last_active_at)
        ORDER BY n.id;
    ELSE
        INSERT INTO sync_changes (org_id, teacher_id, student_id, entity, entity_id, tombstone)
        SELECT o.org_id, o.teacher_id, o.id, 'Student', o.id, true FROM old_rows o ORDER BY o.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sync_students_inserted AFTER INSERT ON students
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_students_changed();
CREATE TRIGGER sync_students_updated AFTER UPDATE ON students
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sync_students_changed();
CREATE TRIGGER sync_students_deleted AFTER DELETE ON students
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_students_changed();

-- The catalogue is shared (org_id 0): a game is an upsert while live (going live, or edited while live),
-- a tombstone when it stops being live (retired, or back to draft). Drafts are nobody's to sync.
CREATE FUNCTION sync_games_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sync_changes (org_id, entity, entity_id)
        SELECT 0, 'Game', n.id FROM new_rows n WHERE n.status = 'live' ORDER BY n.id;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO sync_changes (org_id, entity, entity_id, tombstone)
        SELECT 0, 'Game', n.id, n.status <> 'live'
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE (n.status = 'live' AND n IS DISTINCT FROM o) OR (n.status <> 'live' AND o.status = 'live')
        ORDER BY n.id;
    ELSE
        INSERT INTO sync_changes (org_id, entity, entity_id, tombstone)
        SELECT 0, 'Game', o.id, true FROM old_rows o WHERE o.status = 'live' ORDER BY o.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER sync_games_inserted AFTER INSERT ON games
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_games_changed();
CREATE TRIGGER sync_games_updated AFTER UPDATE ON games
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sync_games_changed();
CREATE TRIGGER sync_games_deleted AFTER DELETE ON games
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sync_games_changed();
