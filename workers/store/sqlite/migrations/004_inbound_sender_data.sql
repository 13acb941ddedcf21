-- 004: how each inbound group session reached us (InboundGroupSessionRecord.senderData), as
-- JSON.stringify(senderData). NULL on sessions stored before this migration: the record is then
-- read back without senderData and the engine derives it from `source`.
ALTER TABLE inbound_group_sessions ADD COLUMN sender_data TEXT;
