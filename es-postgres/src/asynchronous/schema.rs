//! Creating and migrating the tables from the async store: the sync store's migration
//! (its SQL, its lock and its decisions, all in [`crate::schema`]) run through an async
//! client.

use tokio_postgres::{Client, GenericClient, IsolationLevel};

use crate::error::Error;
use crate::schema::{
    SCHEMA_EXISTS, TAKE_MIGRATION_LOCK, VERSION_TABLE_EXISTS, max_version_sql, migration_lock,
    needs_migration, upgrade_script,
};

/// The stored layout version, 0 if the version table does not exist.
async fn stored_version(
    client: &impl GenericClient,
    schema: &str,
) -> Result<i32, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(VERSION_TABLE_EXISTS, &[&schema])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    let version: Option<i32> = client
        .query_one(&max_version_sql(schema), &[])
        .await?
        .try_get(0)?;
    Ok(version.unwrap_or(0))
}

/// Creates the schema and its tables, or migrates them to the current layout, exactly as
/// the sync store's `schema::migrate` does; refuses a newer layout.
pub(super) async fn migrate(client: &mut Client, schema: &str) -> Result<(), Error> {
    let migrate_err = |source| Error::Migrate {
        schema: schema.to_owned(),
        cause: source,
    };
    // Fast path, without locks or DDL: the usual case of an up-to-date schema.
    let found = stored_version(&*client, schema)
        .await
        .map_err(migrate_err)?;
    if !needs_migration(found, schema)? {
        return Ok(());
    }
    // READ COMMITTED whatever the server's default, so the re-check below sees a migration
    // another session committed while this one waited for the lock.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(migrate_err)?;
    let (key, name) = migration_lock(schema);
    tx.execute(TAKE_MIGRATION_LOCK, &[&key, &name])
        .await
        .map_err(migrate_err)?;
    // Another store may have migrated while this one waited for the lock.
    let found = stored_version(&tx, schema).await.map_err(migrate_err)?;
    if !needs_migration(found, schema)? {
        return Ok(());
    }
    let schema_exists: bool = tx
        .query_one(SCHEMA_EXISTS, &[&schema])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(migrate_err)?;
    tx.batch_execute(&upgrade_script(schema, found, schema_exists))
        .await
        .map_err(migrate_err)?;
    tx.commit().await.map_err(migrate_err)
}
