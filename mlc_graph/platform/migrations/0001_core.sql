-- Core tables of the MLC data model. Every tenant-owned row carries org_id.
-- The game catalogue (categories, levels, games, badges) is shared by all organizations.

CREATE TABLE organizations (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    tier        text NOT NULL DEFAULT 'PRELUDE' CHECK (tier IN ('PRELUDE', 'SOLO', 'ENSEMBLE')),
    seat_count  integer NOT NULL DEFAULT 19 CHECK (seat_count >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE teachers (
    id             bigserial PRIMARY KEY,
    org_id         bigint NOT NULL REFERENCES organizations (id),
    first_name     text NOT NULL,
    last_name      text NOT NULL,
    email          text,
    password_hash  text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_teachers_org_name ON teachers (org_id, last_name, first_name, id);

CREATE TABLE students (
    id             bigserial PRIMARY KEY,
    org_id         bigint NOT NULL REFERENCES organizations (id),
    teacher_id     bigint NOT NULL REFERENCES teachers (id),
    first_name     text NOT NULL,
    last_name      text NOT NULL,
    username       text NOT NULL,
    email          text,
    avatar_url     text,
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    password_hash  text,
    last_active_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT students_org_username_key UNIQUE (org_id, username)
);
CREATE INDEX idx_students_teacher_org ON students (teacher_id, org_id) WHERE status = 'active';
-- Teacher.students pages alphabetically (keyset on last_name, first_name, id) over all statuses.
CREATE INDEX idx_students_teacher_name ON students (teacher_id, last_name, first_name, id);
CREATE INDEX idx_students_org ON students (org_id);

CREATE TABLE categories (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT ''
);

CREATE TABLE levels (
    id       bigserial PRIMARY KEY,
    name     text NOT NULL UNIQUE,
    position integer NOT NULL
);

CREATE TABLE games (
    id            bigserial PRIMARY KEY,
    title         text NOT NULL,
    description   text NOT NULL DEFAULT '',
    category_id   bigint NOT NULL REFERENCES categories (id),
    level_id      bigint NOT NULL REFERENCES levels (id),
    difficulty    text NOT NULL CHECK (difficulty IN ('BEGINNER', 'INTERMEDIATE', 'ADVANCED')),
    status        text NOT NULL DEFAULT 'draft' CHECK (status IN ('live', 'draft', 'retired')),
    thumbnail_url text,
    min_score     integer NOT NULL DEFAULT 0,
    max_score     integer NOT NULL DEFAULT 1000 CHECK (max_score > min_score),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_games_status_category ON games (status, category_id) WHERE status = 'live';
CREATE INDEX idx_games_category_difficulty_level ON games (category_id, difficulty, level_id)
    WHERE status = 'live';
-- The library pages live games newest first, optionally within a category (keyset on created_at, id).
CREATE INDEX idx_games_live_created ON games (created_at DESC, id DESC) WHERE status = 'live';
CREATE INDEX idx_games_live_category_created ON games (category_id, created_at DESC, id DESC)
    WHERE status = 'live';

CREATE TABLE assignments (
    id           bigserial PRIMARY KEY,
    org_id       bigint NOT NULL REFERENCES organizations (id),
    student_id   bigint NOT NULL REFERENCES students (id),
    game_id      bigint NOT NULL REFERENCES games (id),
    teacher_id   bigint REFERENCES teachers (id),
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed', 'archived')),
    due_date     date NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX idx_assignments_student_status ON assignments (student_id, status, due_date);
-- Student.assignments without a status filter pages by (student_id, due_date, id).
CREATE INDEX idx_assignments_student_due ON assignments (student_id, due_date, id);
CREATE INDEX idx_assignments_game ON assignments (game_id);

-- Scores are range-partitioned by month on created_at; partitions are created ahead by
-- `mlc-graph maintain` (and at migrate/startup). The default partition catches anything outside.
CREATE TABLE scores (
    id              bigserial,
    org_id          bigint NOT NULL,
    student_id      bigint NOT NULL,
    game_id         bigint NOT NULL,
    score           integer NOT NULL,
    stage           text NOT NULL CHECK (stage IN ('practice', 'challenge')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE scores_default PARTITION OF scores DEFAULT;
CREATE INDEX idx_scores_student_game_created ON scores (student_id, game_id, created_at DESC);
CREATE INDEX idx_scores_game_score_created ON scores (game_id, score DESC, created_at DESC)
    WHERE stage = 'challenge';
-- Student.scores without a game filter pages newest first.
CREATE INDEX idx_scores_student_created ON scores (student_id, created_at DESC, id DESC);

-- Best challenge score per (game, student): derived from scores, kept in step by every write,
-- so leaderboards and bestScore read one row per student instead of scanning history.
CREATE TABLE best_scores (
    game_id     bigint NOT NULL REFERENCES games (id),
    student_id  bigint NOT NULL REFERENCES students (id),
    org_id      bigint NOT NULL,
    teacher_id  bigint NOT NULL,
    score       integer NOT NULL,
    achieved_at timestamptz NOT NULL,
    PRIMARY KEY (game_id, student_id)
);
CREATE INDEX idx_best_scores_game_rank ON best_scores (game_id, score DESC, achieved_at, student_id);
CREATE INDEX idx_best_scores_org_rank ON best_scores (game_id, org_id, score DESC, achieved_at, student_id);
CREATE INDEX idx_best_scores_class_rank
    ON best_scores (game_id, teacher_id, score DESC, achieved_at, student_id);
CREATE INDEX idx_best_scores_student ON best_scores (student_id, game_id);

CREATE TABLE badges (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    icon_url    text
);

CREATE TABLE student_badges (
    student_id bigint NOT NULL REFERENCES students (id),
    badge_id   bigint NOT NULL REFERENCES badges (id),
    org_id     bigint NOT NULL REFERENCES organizations (id),
    awarded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (student_id, badge_id)
);
