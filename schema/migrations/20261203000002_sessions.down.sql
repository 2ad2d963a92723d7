DROP TABLE IF EXISTS processed_events;

--bun:split

DROP TABLE IF EXISTS revocations;

--bun:split

DROP TABLE IF EXISTS sessions;
