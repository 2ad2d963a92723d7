CREATE TABLE IF NOT EXISTS sessions (
    id            VARCHAR(256)  PRIMARY KEY,
    user_id       VARCHAR(256)  NOT NULL,
    token_sha256  VARCHAR(64),
    created_at    TIMESTAMP     NOT NULL,
    expires_at    TIMESTAMP     NOT NULL,
    last_seen_at  TIMESTAMP,
    ip            VARCHAR(64)   NOT NULL DEFAULT '',
    user_agent    VARCHAR(1024) NOT NULL DEFAULT '',
    ended_at      TIMESTAMP,
    revoked_at    TIMESTAMP,
    revoke_reason VARCHAR(1024) NOT NULL DEFAULT ''
);

--bun:split

CREATE INDEX IF NOT EXISTS sessions_user_id_idx ON sessions (user_id);

--bun:split

CREATE UNIQUE INDEX IF NOT EXISTS sessions_token_sha256_idx ON sessions (token_sha256);

--bun:split

CREATE INDEX IF NOT EXISTS sessions_expires_at_idx ON sessions (expires_at);

--bun:split

CREATE TABLE IF NOT EXISTS revocations (
    kind       VARCHAR(16)   NOT NULL,
    value      VARCHAR(256)  NOT NULL,
    reason     VARCHAR(1024) NOT NULL,
    revoked_at TIMESTAMP     NOT NULL,
    expires_at TIMESTAMP     NOT NULL,
    event_id   VARCHAR(128)  NOT NULL,
    PRIMARY KEY (kind, value)
);

--bun:split

CREATE INDEX IF NOT EXISTS revocations_expires_at_idx ON revocations (expires_at);

--bun:split

CREATE TABLE IF NOT EXISTS processed_events (
    id           VARCHAR(128) NOT NULL,
    consumer     VARCHAR(64)  NOT NULL,
    processed_at TIMESTAMP    NOT NULL,
    PRIMARY KEY (consumer, id)
);

--bun:split

CREATE INDEX IF NOT EXISTS processed_events_processed_at_idx ON processed_events (processed_at);
