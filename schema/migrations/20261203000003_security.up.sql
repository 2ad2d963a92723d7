CREATE TABLE IF NOT EXISTS security_audit (
    id          VARCHAR(128)  PRIMARY KEY,
    type        VARCHAR(128)  NOT NULL,
    occurred_at TIMESTAMP     NOT NULL,
    ip          VARCHAR(64)   NOT NULL DEFAULT '',
    user_id     VARCHAR(256)  NOT NULL DEFAULT '',
    session_id  VARCHAR(256)  NOT NULL DEFAULT '',
    namespace   VARCHAR(256)  NOT NULL DEFAULT '',
    code        VARCHAR(64)   NOT NULL DEFAULT '',
    data        TEXT          NOT NULL,
    stream_seq  BIGINT        NOT NULL DEFAULT 0
);

--bun:split

CREATE INDEX IF NOT EXISTS security_audit_occurred_at_idx ON security_audit (occurred_at);

--bun:split

CREATE INDEX IF NOT EXISTS security_audit_ip_idx ON security_audit (ip, occurred_at);

--bun:split

CREATE INDEX IF NOT EXISTS security_audit_user_idx ON security_audit (user_id, occurred_at);

--bun:split

CREATE TABLE IF NOT EXISTS alerts (
    id         VARCHAR(128)  PRIMARY KEY,
    rule       VARCHAR(64)   NOT NULL,
    severity   VARCHAR(16)   NOT NULL,
    subject    VARCHAR(256)  NOT NULL,
    summary    VARCHAR(1024) NOT NULL,
    count      INTEGER       NOT NULL,
    first_seen TIMESTAMP     NOT NULL,
    last_seen  TIMESTAMP     NOT NULL,
    event_ids  TEXT          NOT NULL,
    action     VARCHAR(64)   NOT NULL DEFAULT ''
);

--bun:split

CREATE INDEX IF NOT EXISTS alerts_first_seen_idx ON alerts (first_seen);

--bun:split

CREATE INDEX IF NOT EXISTS alerts_rule_subject_idx ON alerts (rule, subject);

--bun:split

CREATE TABLE IF NOT EXISTS ip_blocks (
    ip         VARCHAR(64)   PRIMARY KEY,
    reason     VARCHAR(1024) NOT NULL,
    alert_id   VARCHAR(128)  NOT NULL DEFAULT '',
    created_at TIMESTAMP     NOT NULL,
    expires_at TIMESTAMP     NOT NULL
);
