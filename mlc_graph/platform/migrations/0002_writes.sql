-- The write path (issue 4): idempotent score submission and web-vitals ingestion.

-- scores is partitioned by created_at, so a unique (student_id, idempotency_key) cannot live on it
-- (a partitioned table's unique keys must include the partition key). The claim lives here instead:
-- the first submission of a key inserts its row, every retry conflicts on the primary key and
-- reads back the stored result. The result columns are filled in the same transaction as the score,
-- so a committed claim always carries its result.
CREATE TABLE score_submissions (
    student_id       bigint NOT NULL REFERENCES students (id),
    idempotency_key  text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 128),
    game_id          bigint NOT NULL REFERENCES games (id),
    score            integer NOT NULL,
    stage            text NOT NULL CHECK (stage IN ('practice', 'challenge')),
    score_id         bigint,
    org_id           bigint,
    score_created_at timestamptz,
    best_score       integer,
    best_achieved_at timestamptz,
    rank             integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (student_id, idempotency_key)
);
-- Retention jobs delete old claims by age (a retry days later is no longer a retry).
CREATE INDEX idx_score_submissions_created ON score_submissions (created_at);

-- Real-user performance samples (Core Web Vitals) as the SPA's web-vitals library reports them.
-- Product analytics, not tenant data: org_id is recorded when the sender is known, never required.
CREATE TABLE web_vitals (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL CHECK (name IN ('LCP', 'INP', 'FID', 'CLS', 'FCP', 'TTFB')),
    value           double precision NOT NULL CHECK (value >= 0),
    rating          text NOT NULL CHECK (rating IN ('good', 'needs-improvement', 'poor')),
    metric_id       text NOT NULL,
    page            text NOT NULL,
    release         text NOT NULL DEFAULT '',
    navigation_type text,
    org_id          bigint,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
-- The library reports a metric again when it changes (CLS, INP) and beacons can be retried: one row per
-- metric instance, the latest value wins.
CREATE UNIQUE INDEX idx_web_vitals_metric ON web_vitals (metric_id, name);
CREATE INDEX idx_web_vitals_page_recorded ON web_vitals (page, recorded_at);
