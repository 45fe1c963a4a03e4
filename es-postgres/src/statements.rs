//! The store's SQL: [`Statements`] as text for one schema, or prepared on one connection.

use postgres::{Client, Statement, ToStatement};

use crate::row::COLUMNS;

/// The store's statements: SQL text with the schema filled in, or the same statements
/// prepared on one connection (which saves a round trip per statement).
pub(crate) struct Statements<T> {
    pub(crate) take_positions: T,
    pub(crate) give_back_positions: T,
    pub(crate) last_position: T,
    pub(crate) stream_version: T,
    pub(crate) find_key: T,
    pub(crate) insert: T,
    pub(crate) read_stream: T,
    pub(crate) read_all: T,
}

/// A statement in either form.
pub(crate) trait Query {
    type Stmt: ?Sized + ToStatement;
    fn stmt(&self) -> &Self::Stmt;
}

impl Query for String {
    type Stmt = str;
    fn stmt(&self) -> &str {
        self
    }
}

impl Query for Statement {
    type Stmt = Statement;
    fn stmt(&self) -> &Statement {
        self
    }
}

impl Statements<String> {
    /// Statements for `schema`, which must be valid (see [`schema::validate`]).
    ///
    /// [`schema::validate`]: crate::schema::validate
    pub(crate) fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        Self {
            take_positions: format!(
                "UPDATE {s}.es_position SET last = last + $1 WHERE id RETURNING last"
            ),
            give_back_positions: format!("UPDATE {s}.es_position SET last = last - $1 WHERE id"),
            last_position: format!("SELECT last FROM {s}.es_position WHERE id"),
            stream_version: format!(
                "SELECT version FROM {s}.es_streams WHERE aggregate_type = $1 AND stream_id = $2"
            ),
            find_key: format!(
                "SELECT stream_version, first_position, event_count FROM {s}.es_commands \
                 WHERE aggregate_type = $1 AND stream_id = $2 AND idempotency_key = $3"
            ),
            // One round trip writes the events, the stream's new version and the
            // idempotency key (data-modifying CTEs all run, referenced or not).
            insert: format!(
                "WITH new_events AS ( \
                     INSERT INTO {s}.es_events (global_position, event_id, aggregate_type, \
                         stream_id, stream_version, event_type, schema_version, recorded_at, \
                         payload, metadata) \
                     SELECT $1::bigint + e.ord - 1, e.event_id, $2::text, $3::text, \
                            $4::bigint + e.ord, e.event_type, e.schema_version, $5::timestamptz, \
                            e.payload, e.metadata \
                     FROM unnest($6::uuid[], $7::text[], $8::bigint[], $9::jsonb[], $10::jsonb[]) \
                          WITH ORDINALITY \
                          AS e(event_id, event_type, schema_version, payload, metadata, ord) \
                 ), stream AS ( \
                     INSERT INTO {s}.es_streams (aggregate_type, stream_id, version) \
                     VALUES ($2::text, $3::text, $4::bigint + cardinality($6::uuid[])) \
                     ON CONFLICT (aggregate_type, stream_id) DO UPDATE SET version = EXCLUDED.version \
                 ) \
                 INSERT INTO {s}.es_commands (aggregate_type, stream_id, idempotency_key, \
                     stream_version, first_position, event_count) \
                 SELECT $2::text, $3::text, $11::text, $4::bigint + cardinality($6::uuid[]), \
                        $1::bigint, cardinality($6::uuid[]) \
                 WHERE $11::text IS NOT NULL"
            ),
            read_stream: format!(
                "SELECT {COLUMNS} FROM {s}.es_events \
                 WHERE aggregate_type = $1 AND stream_id = $2 \
                   AND stream_version >= $3 AND stream_version <= $4 \
                 ORDER BY stream_version"
            ),
            read_all: format!(
                "SELECT {COLUMNS} FROM {s}.es_events WHERE global_position >= $1 \
                 ORDER BY global_position LIMIT $2"
            ),
        }
    }

    /// Prepares every statement on `client`.
    pub(crate) fn prepare(
        &self,
        client: &mut Client,
    ) -> Result<Statements<Statement>, postgres::Error> {
        Ok(Statements {
            take_positions: client.prepare(&self.take_positions)?,
            give_back_positions: client.prepare(&self.give_back_positions)?,
            last_position: client.prepare(&self.last_position)?,
            stream_version: client.prepare(&self.stream_version)?,
            find_key: client.prepare(&self.find_key)?,
            insert: client.prepare(&self.insert)?,
            read_stream: client.prepare(&self.read_stream)?,
            read_all: client.prepare(&self.read_all)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_the_schema() {
        let sql = Statements::new("Tenant_1");
        assert!(sql.insert.contains("INTO \"Tenant_1\".es_events"));
        assert!(
            sql.take_positions
                .starts_with("UPDATE \"Tenant_1\".es_position")
        );
    }
}
