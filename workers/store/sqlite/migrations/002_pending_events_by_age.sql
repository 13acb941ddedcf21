-- 002: index for expiring old undecryptable events by age.
  CREATE INDEX pending_events_by_age ON pending_events (account_id, received_ts);
