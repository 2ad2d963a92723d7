DROP TABLE IF EXISTS ip_blocks;

--bun:split

DROP TABLE IF EXISTS alerts;

--bun:split

DROP TABLE IF EXISTS security_audit;
