//! Every REJECTED outcome keeps a row, so an `order_id` keeps its outcome:
//! the values a rejected message carried may be absent or may not fit
//! their columns, so those columns take NULL, and `raw_message` keeps the
//! message's fields (as JSON) when something did not fit.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The columns a rejection may leave empty, and what `down` fills them with.
const NULLABLE: [(&str, &str); 4] = [
    ("symbol", "''"),
    ("side", "''"),
    ("order_type", "''"),
    ("quantity", "0"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .add_column_if_not_exists(text_null(Orders::RawMessage))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for (column, _) in NULLABLE {
            db.execute_unprepared(&format!(
                "ALTER TABLE orders ALTER COLUMN {column} DROP NOT NULL"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (column, empty) in NULLABLE {
            db.execute_unprepared(&format!(
                "UPDATE orders SET {column} = {empty} WHERE {column} IS NULL; \
                 ALTER TABLE orders ALTER COLUMN {column} SET NOT NULL"
            ))
            .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Orders::Table)
                    .drop_column(Orders::RawMessage)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    RawMessage,
}
