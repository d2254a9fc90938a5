//! Schema overrides where ARC's generated schema differs from what `schemars` derives: Go `int`
//! fields are `type: integer` without a format, and the runner counts carry `minimum: 0`.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An optional Go `int`: `type: integer`, no format.
pub fn int(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer" })
}

/// An optional, nullable Go `*int` with `minimum: 0` (`maxRunners`, `minRunners`).
pub fn nullable_count(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "minimum": 0, "nullable": true })
}

/// A Go `int` with `minimum: 0` (the listener's effective `maxRunners`/`minRunners`).
pub fn count(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "minimum": 0 })
}

/// The map of failed pod UIDs to the time they failed.
pub fn failures(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": { "type": "string", "format": "date-time" }
    })
}
