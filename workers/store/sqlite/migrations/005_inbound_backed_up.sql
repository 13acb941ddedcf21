-- 005: the server-side key backup version each inbound group session was uploaded to
-- (InboundGroupSessionRecord.backedUpVersion), set only after the server confirmed the upload.
-- NULL: not in any backup yet. Rewriting a session (a better copy arrived) clears it.
ALTER TABLE inbound_group_sessions ADD COLUMN backed_up_version TEXT;
CREATE INDEX inbound_group_sessions_backup ON inbound_group_sessions (account_id, backed_up_version);
