//! Proof that deleted data is gone: a scan of every store for given
//! strings (ids, emails, message texts).
//!
//! The tables are found from the catalogue of each database, not from a list
//! kept here, and every Redis key under the test's prefix is read whatever
//! its type, so a table or cache added later cannot quietly keep what a user
//! deleted.

use crate::Harness;
use sqlx::PgPool;

/// Where one of the strings was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `auth`, `backend` or `redis`.
    pub store: &'static str,
    /// `table.column`, or the Redis key.
    pub location: String,
    pub needle: String,
}

/// Column types that can hold an id or text (arrays of them included, and
/// enums or domains through their text form).
const SCANNED_TYPES: &[&str] = &[
    "text",
    "character varying",
    "character",
    "json",
    "jsonb",
    "uuid",
    "ARRAY",
    "USER-DEFINED",
];

impl Harness {
    /// Every place in both databases and in Redis (under this test's prefix)
    /// where any of `needles` occurs (case-insensitive substring).
    pub async fn scan_stores(&self, needles: &[String]) -> Vec<Finding> {
        assert!(!needles.is_empty(), "nothing to scan for");
        assert!(
            needles.iter().all(|n| n.len() >= 6),
            "needles this short would match by chance: {needles:?}"
        );
        let mut found = scan_database(&self.dbs.auth, "auth", needles).await;
        found.extend(scan_database(&self.dbs.backend, "backend", needles).await);
        found.extend(self.scan_redis(needles).await);
        found
    }

    async fn scan_redis(&self, needles: &[String]) -> Vec<Finding> {
        let mut conn = self.redis.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.redis_prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .expect("SCAN");
            keys.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        let mut found = Vec::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("TYPE");
            let mut cmd = match kind.as_str() {
                "string" => redis::cmd("GET"),
                "list" => {
                    let mut c = redis::cmd("LRANGE");
                    c.arg(&key).arg(0).arg(-1);
                    c
                }
                "set" => redis::cmd("SMEMBERS"),
                "zset" => {
                    let mut c = redis::cmd("ZRANGE");
                    c.arg(&key).arg(0).arg(-1);
                    c
                }
                "hash" => redis::cmd("HGETALL"),
                "stream" => {
                    let mut c = redis::cmd("XRANGE");
                    c.arg(&key).arg("-").arg("+");
                    c
                }
                // Expired between SCAN and TYPE.
                "none" => continue,
                other => panic!("the scan does not know Redis type {other} (key {key})"),
            };
            if matches!(kind.as_str(), "string" | "set" | "hash") {
                cmd.arg(&key);
            }
            let value: redis::Value = cmd.query_async(&mut conn).await.expect("read key");
            let mut text = key.clone();
            flatten(&value, &mut text);
            let text = text.to_lowercase();
            for n in needles {
                if text.contains(&n.to_lowercase()) {
                    found.push(Finding {
                        store: "redis",
                        location: key.clone(),
                        needle: n.clone(),
                    });
                }
            }
        }
        found
    }
}

fn flatten(v: &redis::Value, out: &mut String) {
    use redis::Value::*;
    match v {
        BulkString(b) => {
            out.push('\n');
            out.push_str(&String::from_utf8_lossy(b));
        }
        SimpleString(s) => {
            out.push('\n');
            out.push_str(s);
        }
        Array(items) | Set(items) => items.iter().for_each(|i| flatten(i, out)),
        Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        Int(i) => out.push_str(&format!("\n{i}")),
        _ => {}
    }
}

/// Every base table of every user schema, every column of a scanned type.
async fn scan_database(pool: &PgPool, store: &'static str, needles: &[String]) -> Vec<Finding> {
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.table_schema::text, c.table_name::text, c.column_name::text
         FROM information_schema.columns c
         JOIN information_schema.tables t
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE t.table_type = 'BASE TABLE'
           AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
           AND c.data_type = ANY($1)
         ORDER BY 1, 2, 3",
    )
    .bind(SCANNED_TYPES)
    .fetch_all(pool)
    .await
    .expect("read the catalogue");
    assert!(
        columns.len() > 5,
        "the catalogue shows almost nothing to scan in {store}: {columns:?}"
    );
    let lowered: Vec<String> = needles.iter().map(|n| n.to_lowercase()).collect();
    let mut found = Vec::new();
    for (schema, table, column) in columns {
        let sql = format!(
            "SELECT DISTINCT n FROM {}.{} t, unnest($1::text[]) n
             WHERE strpos(lower(t.{}::text), n) > 0",
            quote(&schema),
            quote(&table),
            quote(&column)
        );
        let hits: Vec<String> = sqlx::query_scalar(&sql)
            .bind(&lowered)
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("scan {store}.{table}.{column}: {e}"));
        for n in hits {
            found.push(Finding {
                store,
                location: format!("{table}.{column}"),
                needle: n,
            });
        }
    }
    found
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl Harness {
    /// Wait until every event auth has written was relayed and the backend
    /// applied and acknowledged it: the outbox has no unpublished row, and
    /// the backend's consumer group has delivered the stream's newest entry
    /// and has nothing pending. Events are asynchronous by design; this is
    /// how a test knows one has been applied.
    pub async fn events_settled(&self) {
        let stream = format!("{}events", self.redis_prefix);
        crate::eventually(10, "auth's events applied by the backend", || async {
            let unpublished: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                    .fetch_one(&self.dbs.auth)
                    .await
                    .ok()?;
            if unpublished > 0 {
                return None;
            }
            let mut conn = self.redis.clone();
            let info: redis::Value = redis::cmd("XINFO")
                .arg("STREAM")
                .arg(&stream)
                .query_async(&mut conn)
                .await
                .ok()?;
            let last = field(&info, "last-generated-id")?;
            let groups: redis::Value = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&stream)
                .query_async(&mut conn)
                .await
                .ok()?;
            let redis::Value::Array(groups) = groups else {
                return None;
            };
            let backend = groups
                .iter()
                .find(|g| field(g, "name").as_deref() == Some("backend"))?;
            let delivered = field(backend, "last-delivered-id")?;
            let pending = field(backend, "pending")?;
            (delivered == last && pending == "0").then_some(())
        })
        .await;
    }
}

/// A field of an `XINFO` reply (a flat array of names and values, or a map).
fn field(v: &redis::Value, name: &str) -> Option<String> {
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(i) => Some(i.to_string()),
        _ => None,
    };
    match v {
        redis::Value::Array(items) => items
            .chunks(2)
            .find(|kv| text(&kv[0]).as_deref() == Some(name))
            .and_then(|kv| kv.get(1).and_then(text)),
        redis::Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .and_then(|(_, v)| text(v)),
        _ => None,
    }
}
