//! The run's own database on the PostgreSQL server `DATABASE_URL` names (default: the machine's
//! on 5432): the checker compares every row in it with Temporal, so nothing else may write there.

use sqlx::postgres::PgPoolOptions;

pub(crate) struct Database {
    pub(crate) url: String,
    admin: String,
    name: String,
}

impl Database {
    pub(crate) async fn create() -> anyhow::Result<Self> {
        let admin = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!(
            "chaos_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin)
            .await?;
        // The name is made here from a pid and a UUID: nothing outside reaches this SQL.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&pool)
            .await?;
        pool.close().await;
        let (server, _) = admin
            .rsplit_once('/')
            .ok_or_else(|| anyhow::anyhow!("DATABASE_URL must end in /database"))?;
        Ok(Self {
            url: format!("{server}/{name}"),
            admin,
            name,
        })
    }

    /// Drops the database, closing whatever sessions it still has.
    pub(crate) async fn drop_now(self) {
        if let Ok(pool) = PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.admin)
            .await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            )))
            .execute(&pool)
            .await;
            pool.close().await;
        }
    }
}
