DROP INDEX IF EXISTS idx_token_usage_user_date;
DROP TABLE IF EXISTS token_usage_tracking;
