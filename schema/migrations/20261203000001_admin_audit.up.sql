CREATE TABLE IF NOT EXISTS admin_audit (
    id         VARCHAR(64)  PRIMARY KEY,
    created_at TIMESTAMP    NOT NULL,
    actor      VARCHAR(255) NOT NULL,
    action     VARCHAR(64)  NOT NULL,
    target     VARCHAR(255) NOT NULL,
    node       VARCHAR(64)  NOT NULL,
    result     TEXT         NOT NULL DEFAULT ''
);

--bun:split

CREATE INDEX IF NOT EXISTS admin_audit_created_at_idx ON admin_audit (created_at);
