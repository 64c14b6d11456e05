//! The payment provider's customers and the webhook events already handled.

use confab_core::ids::UserId;
use sqlx::{PgConnection, PgExecutor};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Customer {
    pub user_id: UserId,
    pub customer_id: String,
    pub subscription_id: Option<String>,
    pub status: Option<String>,
}

pub async fn customer_of<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
) -> Result<Option<Customer>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_id, customer_id, subscription_id, status FROM billing_customers WHERE user_id = $1",
    )
    .bind(user)
    .fetch_optional(db)
    .await
}

pub async fn by_customer<'e>(
    db: impl PgExecutor<'e>,
    customer: &str,
) -> Result<Option<Customer>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_id, customer_id, subscription_id, status FROM billing_customers WHERE customer_id = $1",
    )
    .bind(customer)
    .fetch_optional(db)
    .await
}

/// Remember the provider's customer of `user`; the first one stays if two
/// checkouts raced (returns the one kept).
pub async fn insert_customer(
    tx: &mut PgConnection,
    user: UserId,
    customer: &str,
) -> Result<String, sqlx::Error> {
    sqlx::query(
        "INSERT INTO billing_customers (user_id, customer_id) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user)
    .bind(customer)
    .execute(&mut *tx)
    .await?;
    sqlx::query_scalar("SELECT customer_id FROM billing_customers WHERE user_id = $1")
        .bind(user)
        .fetch_one(&mut *tx)
        .await
}

pub async fn set_subscription(
    tx: &mut PgConnection,
    user: UserId,
    subscription: &str,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE billing_customers SET subscription_id = $2, status = $3, updated_at = now() WHERE user_id = $1",
    )
    .bind(user)
    .bind(subscription)
    .bind(status)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Record a webhook event id; false if it was already there (a replay).
pub async fn record_event(
    tx: &mut PgConnection,
    id: &str,
    kind: &str,
    outcome: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO billing_events (id, type, outcome) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(kind)
    .bind(outcome)
    .execute(&mut *tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn event_seen<'e>(db: impl PgExecutor<'e>, id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM billing_events WHERE id = $1)")
        .bind(id)
        .fetch_one(db)
        .await
}
