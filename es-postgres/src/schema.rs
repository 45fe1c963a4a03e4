//! Schema names and the versioned tables.

use postgres::GenericClient;

use crate::error::Error;

/// The table layout version this code writes and reads.
pub(crate) const SCHEMA_VERSION: i32 = 4;

/// First key of the advisory lock that serialises migrations (the second is the schema's
/// hash), so two stores opening at once do not both create the tables.
const MIGRATION_LOCK: i32 = 0x6573_0001;

/// Checks that `schema` is a plain identifier: ASCII letters, digits and underscores, at
/// most 63 bytes (PostgreSQL silently truncates longer names).
pub(crate) fn validate(schema: &str) -> Result<(), Error> {
    let reason = if schema.is_empty() {
        "it is empty"
    } else if schema.len() > 63 {
        "it is longer than 63 characters"
    } else if !schema
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        "it contains a character other than an ASCII letter, digit or underscore"
    } else {
        return Ok(());
    };
    Err(Error::InvalidSchema {
        schema: schema.to_owned(),
        reason,
    })
}

/// The SQL that takes a schema from version `i` to `i + 1`; `{s}` is the quoted schema.
fn migration(step: i32, s: &str) -> Option<String> {
    match step {
        0 => Some(format!(
            "CREATE TABLE {s}.es_position (
                 id   boolean PRIMARY KEY DEFAULT true CHECK (id),
                 last bigint  NOT NULL
             );
             INSERT INTO {s}.es_position (id, last) VALUES (true, 0);
             CREATE TABLE {s}.es_events (
                 global_position bigint      PRIMARY KEY,
                 event_id        uuid        NOT NULL,
                 aggregate_type  text        NOT NULL,
                 stream_id       text        NOT NULL,
                 stream_version  bigint      NOT NULL,
                 event_type      text        NOT NULL,
                 schema_version  bigint      NOT NULL,
                 recorded_at     timestamptz NOT NULL,
                 payload         jsonb       NOT NULL,
                 metadata        jsonb       NOT NULL,
                 CONSTRAINT es_events_event_id_key UNIQUE (event_id),
                 CONSTRAINT es_events_stream_key
                     UNIQUE (aggregate_type, stream_id, stream_version)
             );"
        )),
        // 1 -> 2: each stream's version in a row of its own, so the expected-version check
        // of an append is one primary-key lookup whatever the planner thinks of
        // `max(stream_version)`; the idempotency keys of committed appends; and checks
        // that keep the numbers every reader relies on positive (NOT VALID: rows written
        // before are checked as they are read, not at migration).
        //
        // The locks come first, in the order appends take them: they wait for appends
        // still in flight (from a process of the previous release) and keep new ones out
        // until the migration commits, so the versions copied into es_streams are those
        // of every committed event. Without them an append committing between the copy
        // and the ALTER TABLE (which locks es_events only at the end) was missing from
        // es_streams, and every later append to its stream conflicted for good.
        // EXCLUSIVE lets readers of the log carry on until the ALTER TABLE.
        1 => Some(format!(
            "LOCK TABLE {s}.es_position, {s}.es_events IN EXCLUSIVE MODE;
             CREATE TABLE {s}.es_streams (
                 aggregate_type text   NOT NULL,
                 stream_id      text   NOT NULL,
                 version        bigint NOT NULL CHECK (version > 0),
                 PRIMARY KEY (aggregate_type, stream_id)
             );
             INSERT INTO {s}.es_streams (aggregate_type, stream_id, version)
                 SELECT aggregate_type, stream_id, max(stream_version)
                 FROM {s}.es_events GROUP BY aggregate_type, stream_id
                 HAVING max(stream_version) > 0;
             CREATE TABLE {s}.es_commands (
                 aggregate_type  text   NOT NULL,
                 stream_id       text   NOT NULL,
                 idempotency_key text   NOT NULL,
                 stream_version  bigint NOT NULL,
                 first_position  bigint NOT NULL,
                 event_count     bigint NOT NULL,
                 PRIMARY KEY (aggregate_type, stream_id, idempotency_key)
             );
             ALTER TABLE {s}.es_events
                 ADD CONSTRAINT es_events_positive_check
                 CHECK (stream_version > 0 AND global_position > 0 AND schema_version > 0)
                 NOT VALID;"
        )),
        // 2 -> 3: queries by event type read only matching events, snapshots, and
        // read-model checkpoints with the lease (owner, expiry) of the projector instance
        // running each read model.
        2 => Some(format!(
            "CREATE INDEX es_events_by_type ON {s}.es_events
                 (aggregate_type, event_type, global_position);
             CREATE TABLE {s}.es_snapshots (
                 aggregate_type   text        NOT NULL,
                 stream_id        text        NOT NULL,
                 stream_version   bigint      NOT NULL CHECK (stream_version > 0),
                 snapshot_version integer     NOT NULL CHECK (snapshot_version > 0),
                 taken_at         timestamptz NOT NULL,
                 state            jsonb       NOT NULL,
                 PRIMARY KEY (aggregate_type, stream_id, stream_version)
             );
             CREATE TABLE {s}.es_checkpoints (
                 name        text        PRIMARY KEY,
                 position    bigint      NOT NULL CHECK (position >= 0),
                 updated_at  timestamptz NOT NULL,
                 lease_owner text,
                 lease_until timestamptz
             );"
        )),
        // 3 -> 4: every committed append notifies the listeners of the schema (channel
        // `es_events`, payload the schema's name), which wake projectors at once instead
        // of at their next poll (see listen.rs). A statement trigger: one notification per
        // insert however many rows, and the server folds a transaction's duplicates.
        3 => Some(format!(
            "CREATE FUNCTION {s}.es_notify_append() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM pg_notify('es_events', TG_TABLE_SCHEMA);
                 RETURN NULL;
             END
             $$;
             CREATE TRIGGER es_events_notify AFTER INSERT ON {s}.es_events
                 FOR EACH STATEMENT EXECUTE FUNCTION {s}.es_notify_append();"
        )),
        _ => None,
    }
}

/// Whether the version table of schema `$1` exists.
///
/// It asks the catalog tables with a query (an MVCC snapshot), not `to_regclass`: that
/// consults the backend's catalog cache, which can still miss a schema another session
/// created while this one waited for the migration lock.
pub(crate) const VERSION_TABLE_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = $1 AND c.relname = 'es_schema_version')";

/// Whether schema `$1` exists.
pub(crate) const SCHEMA_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)";

/// Takes the migration lock of schema `$2` (`$1` is [`MIGRATION_LOCK`]) until the
/// transaction ends.
pub(crate) const TAKE_MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2))";

/// The parameters of [`TAKE_MIGRATION_LOCK`] for `schema`.
pub(crate) fn migration_lock(schema: &str) -> (i32, &str) {
    (MIGRATION_LOCK, schema)
}

/// The stored layout version of `schema` (NULL if none), once its version table exists.
pub(crate) fn max_version_sql(schema: &str) -> String {
    format!("SELECT max(version) FROM \"{schema}\".es_schema_version")
}

/// Whether a schema at layout version `found` (0: no tables) needs migrating; a layout
/// newer than this code is refused.
pub(crate) fn needs_migration(found: i32, schema: &str) -> Result<bool, Error> {
    check_not_newer(found, schema)?;
    Ok(found != SCHEMA_VERSION)
}

/// The SQL, one batch, that takes `schema` from layout version `found` to
/// [`SCHEMA_VERSION`], run in the migration transaction once it holds the migration lock:
/// the schema itself if it does not exist, the version table, and each step with the
/// version it reaches.
pub(crate) fn upgrade_script(schema: &str, found: i32, schema_exists: bool) -> String {
    let quoted = format!("\"{schema}\"");
    let mut script = String::new();
    if !schema_exists {
        script.push_str(&format!("CREATE SCHEMA {quoted};\n"));
    }
    if found == 0 {
        script.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {quoted}.es_schema_version (version integer NOT NULL);\n"
        ));
    }
    for step in found..SCHEMA_VERSION {
        if let Some(sql) = migration(step, &quoted) {
            script.push_str(sql.trim_end().trim_end_matches(';'));
            script.push_str(";\n");
        }
        script.push_str(&format!(
            "INSERT INTO {quoted}.es_schema_version (version) VALUES ({});\n",
            step + 1
        ));
    }
    script
}

/// The stored layout version, 0 if the version table does not exist.
fn stored_version(client: &mut impl GenericClient, schema: &str) -> Result<i32, postgres::Error> {
    let exists: bool = client
        .query_one(VERSION_TABLE_EXISTS, &[&schema])?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    let version: Option<i32> = client
        .query_one(&max_version_sql(schema), &[])?
        .try_get(0)?;
    Ok(version.unwrap_or(0))
}

/// Creates the schema and its tables, or migrates them to [`SCHEMA_VERSION`]; refuses a
/// newer layout.
pub(crate) fn migrate(client: &mut postgres::Client, schema: &str) -> Result<(), Error> {
    let migrate_err = |source| Error::Migrate {
        schema: schema.to_owned(),
        cause: source,
    };
    // Fast path, without locks or DDL: the usual case of an up-to-date schema.
    let found = stored_version(client, schema).map_err(migrate_err)?;
    if !needs_migration(found, schema)? {
        return Ok(());
    }

    // READ COMMITTED whatever the server's default, so the re-check below sees a migration
    // another session committed while this one waited for the lock.
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::ReadCommitted)
        .start()
        .map_err(migrate_err)?;
    let (key, name) = migration_lock(schema);
    tx.execute(TAKE_MIGRATION_LOCK, &[&key, &name])
        .map_err(migrate_err)?;
    // Another store may have migrated while this one waited for the lock.
    let found = stored_version(&mut tx, schema).map_err(migrate_err)?;
    if !needs_migration(found, schema)? {
        return Ok(());
    }
    let schema_exists: bool = tx
        .query_one(SCHEMA_EXISTS, &[&schema])
        .and_then(|row| row.try_get(0))
        .map_err(migrate_err)?;
    tx.batch_execute(&upgrade_script(schema, found, schema_exists))
        .map_err(migrate_err)?;
    tx.commit().map_err(migrate_err)
}

fn check_not_newer(found: i32, schema: &str) -> Result<(), Error> {
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            schema: schema.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upgrade_script_creates_what_is_missing_and_records_each_step() {
        let fresh = upgrade_script("Tenant", 0, false);
        assert!(fresh.starts_with("CREATE SCHEMA \"Tenant\";"), "{fresh}");
        assert!(fresh.contains("CREATE TABLE IF NOT EXISTS \"Tenant\".es_schema_version"));
        for version in 1..=SCHEMA_VERSION {
            assert!(fresh.contains(&format!("VALUES ({version});")), "{fresh}");
        }
        assert!(!fresh.contains(";;"), "{fresh}");
        let from_one = upgrade_script("Tenant", 1, true);
        assert!(!from_one.contains("CREATE SCHEMA"), "{from_one}");
        assert!(!from_one.contains("es_position ("), "{from_one}");
        assert!(
            from_one.contains("CREATE TABLE \"Tenant\".es_streams"),
            "{from_one}"
        );
        assert!(upgrade_script("Tenant", SCHEMA_VERSION, true).is_empty());
        assert!(needs_migration(SCHEMA_VERSION + 1, "Tenant").is_err());
        assert!(!needs_migration(SCHEMA_VERSION, "Tenant").unwrap());
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["public", "es", "Tenant_42", "_x", &"a".repeat(63)] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a-b", "a b", "x\"; DROP", "é", "a.b", &"a".repeat(64)] {
            let error = validate(bad).unwrap_err();
            assert!(error.to_string().contains("ASCII letters"), "{error}");
        }
    }
}
