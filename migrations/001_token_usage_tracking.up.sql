-- Seed 001, "Database Schema Updates": per-request token usage and cost, by user and session.
CREATE TABLE IF NOT EXISTS token_usage_tracking (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL,
    session_key VARCHAR(255) NOT NULL,
    agent_name VARCHAR(255),
    tokens_used INTEGER,
    cost_usd DECIMAL(10,6),
    optimization_applied BOOLEAN DEFAULT FALSE,
    created_at TIMESTAMP DEFAULT NOW()
);

-- Per-user usage over time (cost dashboards, budget enforcement).
CREATE INDEX IF NOT EXISTS idx_token_usage_user_date
ON token_usage_tracking(user_id, created_at);
