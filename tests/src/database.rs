//! The read-model stores for a test binary. PostgreSQL: `DATABASE_URL` when `make test` made a fresh one,
//! otherwise a fresh database created here on the local PostgreSQL.

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::OnceCell;

static URL: OnceCell<String> = OnceCell::const_new();

pub async fn database_url() -> &'static str {
    URL.get_or_init(|| async {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return url;
        }
        let admin = "postgres://postgres@127.0.0.1:5432/postgres";
        let name = format!(
            "delivery_test_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(admin)
            .await
            .expect("no DATABASE_URL and no PostgreSQL on 127.0.0.1:5432: run `make test`");
        // The name is made here from a pid and a UUID: nothing outside reaches this SQL.
        let create = sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""));
        sqlx::query(create)
            .execute(&pool)
            .await
            .expect("creating the test database");
        format!("postgres://postgres@127.0.0.1:5432/{name}")
    })
    .await
}

/// A pool on the test database with the read-model schema applied.
pub async fn read_model() -> PgPool {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(database_url().await)
        .await
        .expect("test database");
    delivery_read_model::migrate(&pool)
        .await
        .expect("migrations");
    pool
}

/// Redis for tests: `REDIS_URL` from `make test`, else the local server. Tests isolate themselves
/// with key prefixes, never by flushing.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The Redis key prefix of this test binary. The outbox relay publishes every change in its
/// database, so the prefix follows the database: workers sharing one database share one prefix.
pub async fn redis_prefix() -> String {
    let url = database_url().await;
    let database = url.rsplit('/').next().unwrap_or("delivery");
    format!(
        "{}{database}:",
        std::env::var("TEST_REDIS_PREFIX").unwrap_or_default()
    )
}

/// A second, empty database on the test database's server, for a test that needs a read model of
/// its own (e.g. to rebuild one from nothing): its URL. The caller drops it with
/// [`drop_database`].
pub async fn fresh_database() -> String {
    let base = database_url().await;
    let name = format!("dr_{}", uuid::Uuid::new_v4().simple());
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(base)
        .await
        .expect("the test database");
    // The name is made here from a UUID: nothing outside reaches this SQL.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&pool)
        .await
        .expect("creating a fresh database");
    pool.close().await;
    let (server, _) = base.rsplit_once('/').expect("a database URL ends in /name");
    format!("{server}/{name}")
}

/// Drops a database made by [`fresh_database`], closing whatever sessions it still has.
pub async fn drop_database(url: &str) {
    let (_, name) = url.rsplit_once('/').expect("a database URL ends in /name");
    assert!(
        name.starts_with("dr_"),
        "only drops what fresh_database made"
    );
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url().await)
        .await
        .expect("the test database");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&pool)
    .await
    .expect("dropping the fresh database");
    pool.close().await;
}
