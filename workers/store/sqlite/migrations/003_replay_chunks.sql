-- 003: replay records packed: one row per session per saved batch (up to REPLAY_CHUNK = 64 records,
-- a JSON array of [message_index, event_id, origin_server_ts]) instead of one row per message, and
-- keyed by a session number given in order of first use (so a sync's inserts land in the few index
-- pages of recent sessions, not in one page per session as long random keys would).
  CREATE TABLE replay_sessions (
    sess_no INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    sender_key TEXT NOT NULL,
    session_id TEXT NOT NULL,
    UNIQUE (account_id, sender_key, session_id)
  );
  CREATE TABLE replay_chunks (
    sess_no INTEGER NOT NULL REFERENCES replay_sessions (sess_no) ON DELETE CASCADE,
    min_index INTEGER NOT NULL,
    max_index INTEGER NOT NULL,
    records TEXT NOT NULL
  );
  CREATE INDEX replay_chunks_by_session ON replay_chunks (sess_no, min_index);
  INSERT INTO replay_sessions (account_id, sender_key, session_id)
    SELECT DISTINCT account_id, sender_key, session_id FROM replay_records;
  INSERT INTO replay_chunks (sess_no, min_index, max_index, records)
    SELECT s.sess_no, MIN(r.message_index), MAX(r.message_index),
           json_group_array(json_array(r.message_index, r.event_id, r.origin_server_ts))
    FROM replay_records AS r
    JOIN replay_sessions AS s ON s.account_id = r.account_id AND s.sender_key = r.sender_key AND s.session_id = r.session_id
    GROUP BY s.sess_no, r.message_index / 64;
  DROP TABLE replay_records;
