//! Orders found at the exchange that carry this service's client order id
//! prefix and have no row here: a database restored from a backup, a
//! second deployment sharing the namespace, an order sent twice. Each is an
//! operator alert; the table keeps what was seen of it, when, and whether
//! it was cancelled.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE IF NOT EXISTS exchange_orphans ( \
                   id bigserial PRIMARY KEY, \
                   exchange_order_id varchar(64) NOT NULL UNIQUE, \
                   client_order_id varchar(64) NOT NULL, \
                   symbol varchar(32) NOT NULL, \
                   side varchar(10), \
                   order_type varchar(32), \
                   quantity numeric(30, 12), \
                   price numeric(30, 12), \
                   filled_quantity numeric(30, 12) NOT NULL DEFAULT 0, \
                   exchange_status varchar(32) NOT NULL, \
                   created_at_exchange timestamptz, \
                   first_seen timestamptz NOT NULL DEFAULT now(), \
                   last_seen timestamptz NOT NULL DEFAULT now(), \
                   cancelled_at timestamptz, \
                   cancel_error text \
                 )",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS exchange_orphans")
            .await?;
        Ok(())
    }
}
