-- Trusted documents (issue 3): the allow-list `mlc-graph persist FILE` registers. It lives in the database
-- so that it survives restarts and is shared by every instance; Redis and each process cache it.
CREATE TABLE persisted_documents (
    sha256      text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    body        text NOT NULL,
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
