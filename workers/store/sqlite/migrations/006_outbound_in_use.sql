-- 006: the in-use mark of an outbound group session (OutboundGroupSessionRecord.inUseBy): set
-- while an engine holds the session's ratchet in memory ahead of the stored pickle, cleared when
-- it closes cleanly. NULL: the stored pickle is the session's current state.
ALTER TABLE outbound_group_sessions ADD COLUMN in_use_by TEXT;
