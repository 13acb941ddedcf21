-- 001: initial schema.
-- Append only: never edit a released migration; add the next number instead. The statements keep
-- the text (indentation included) they had when inline in SqliteCryptoStore.ts: SQLite stores it in
-- sqlite_master.
  CREATE TABLE accounts (
    account_id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    pickle TEXT NOT NULL,
    device_keys_uploaded INTEGER NOT NULL DEFAULT 0,
    created_ts INTEGER NOT NULL,
    UNIQUE (user_id, device_id)
  );
  CREATE INDEX accounts_by_user ON accounts (user_id, created_ts);

  CREATE TABLE olm_sessions (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    sender_key TEXT NOT NULL,
    session_id TEXT NOT NULL,
    pickle TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    last_used_ts INTEGER NOT NULL,
    PRIMARY KEY (account_id, sender_key, session_id)
  );

  CREATE TABLE inbound_group_sessions (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    sender_key TEXT NOT NULL,
    session_id TEXT NOT NULL,
    pickle TEXT NOT NULL,
    claimed_ed25519 TEXT NOT NULL,
    forwarding_chain TEXT NOT NULL, -- JSON array of curve25519 keys, oldest first
    first_known_index INTEGER NOT NULL,
    source TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    PRIMARY KEY (account_id, room_id, sender_key, session_id)
  );

  CREATE TABLE outbound_group_sessions (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    pickle TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    rotation_period_ms INTEGER NOT NULL,
    rotation_period_msgs INTEGER NOT NULL,
    shared_with TEXT NOT NULL, -- JSON array of SharedWithEntry
    PRIMARY KEY (account_id, room_id)
  );

  CREATE TABLE devices (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    ed25519 TEXT NOT NULL,
    curve25519 TEXT NOT NULL,
    algorithms TEXT NOT NULL, -- JSON array of strings
    display_name TEXT,
    verified INTEGER NOT NULL,
    blacklisted INTEGER NOT NULL,
    ignored INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    keys_json TEXT NOT NULL,
    first_seen_ts INTEGER NOT NULL,
    PRIMARY KEY (account_id, user_id, device_id)
  );
  CREATE INDEX devices_by_curve25519 ON devices (account_id, curve25519);

  CREATE TABLE tracked_users (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    dirty INTEGER NOT NULL,
    PRIMARY KEY (account_id, user_id)
  );

  CREATE TABLE rooms (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    encryption TEXT, -- JSON object, or NULL when the room is not encrypted
    history_visibility TEXT,
    PRIMARY KEY (account_id, room_id)
  );

  CREATE TABLE room_members (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    PRIMARY KEY (account_id, room_id, user_id)
  );

  CREATE TABLE replay_records (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    sender_key TEXT NOT NULL,
    session_id TEXT NOT NULL,
    message_index INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    PRIMARY KEY (account_id, sender_key, session_id, message_index)
  );

  CREATE TABLE pending_events (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    event_json TEXT NOT NULL,
    received_ts INTEGER NOT NULL,
    PRIMARY KEY (account_id, room_id, event_id)
  );
  CREATE INDEX pending_events_by_session ON pending_events (account_id, room_id, session_id);

  CREATE TABLE to_device_digests (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (account_id, digest)
  );
  CREATE INDEX to_device_digests_by_ts ON to_device_digests (ts);

  CREATE TABLE kv (
    account_id INTEGER NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (account_id, key)
  );

  CREATE TABLE sync_state (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (account_id) ON DELETE CASCADE,
    sync_token TEXT NOT NULL
  );
