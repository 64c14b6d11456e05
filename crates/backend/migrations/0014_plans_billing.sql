-- Plans and billing (issue 12). The plan itself is profiles.plan (0001).

-- The payment provider's customer of a user (created at the first checkout)
-- and the subscription last seen for it, as the provider reported it.
CREATE TABLE billing_customers (
    user_id         uuid PRIMARY KEY REFERENCES profiles (user_id) ON DELETE CASCADE,
    customer_id     text NOT NULL UNIQUE,
    subscription_id text,
    status          text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Webhook events already handled, by the provider's event id: a replay (or
-- the provider's own retry) changes nothing. Holds no user data.
CREATE TABLE billing_events (
    id          text PRIMARY KEY,
    type        text        NOT NULL,
    outcome     text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
