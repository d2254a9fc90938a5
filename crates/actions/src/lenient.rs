//! Lenient JSON decoding (spec §5.2, §5.6).
//!
//! The Actions service is decoded by Go clients: keys match case-insensitively, `null` means "leave the
//! default", unknown keys are ignored and a UTF-8 BOM may prefix any body. We get the same tolerance by
//! normalising the JSON tree before handing it to serde: object keys get a lower-case first letter
//! (`MessageId` → `messageId`; the one capitalised key of the protocol, `RunnerSetting`, is matched
//! by a serde alias) and `null` members are dropped so `#[serde(default)]` applies. Timestamps go
//! through [`time_opt`], which turns anything unparseable or zero into `None` instead of failing.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// The UTF-8 byte-order mark some .NET services put in front of a body.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Strips a leading UTF-8 BOM.
pub fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(BOM).unwrap_or(body)
}

/// Decodes `body` leniently into `T`.
pub fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    let value: Value = serde_json::from_slice(strip_bom(body))?;
    from_value(value)
}

/// Decodes an already parsed value leniently into `T`.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(normalize(value))
}

/// Normalises keys and drops null members, recursively.
pub fn normalize(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (lower_first(&k), normalize(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

fn lower_first(key: &str) -> String {
    // An all-caps key (`ID`) becomes all lower-case; otherwise only the first letter changes.
    if key.len() > 1 && key.chars().all(|c| !c.is_lowercase()) {
        return key.to_lowercase();
    }
    let mut chars = key.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Serde helpers for optional RFC 3339 timestamps that never fail a decode.
pub mod time_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => match t.format(&Rfc3339) {
                Ok(text) => s.serialize_str(&text),
                Err(e) => Err(serde::ser::Error::custom(e)),
            },
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match v {
            Value::String(text) => parse(&text),
            _ => None,
        })
    }

    /// Parses an RFC 3339 time with any fractional precision. Go's zero time (year 1) counts as absent.
    pub fn parse(text: &str) -> Option<OffsetDateTime> {
        let t = OffsetDateTime::parse(text.trim(), &Rfc3339).ok()?;
        (t.year() > 1).then_some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Default, Debug)]
    #[serde(default, rename_all = "camelCase")]
    struct T {
        message_id: i64,
        name: String,
        #[serde(with = "time_opt")]
        when: Option<time::OffsetDateTime>,
    }

    #[test]
    fn tolerates_case_nulls_bom_unknown_keys_and_bad_times() {
        let body = b"\xEF\xBB\xBF{\"MessageId\": 2147483648, \"name\": null, \"extra\": 1, \"when\": \"yesterday\"}";
        let t: T = from_slice(body).unwrap();
        assert_eq!(t.message_id, 2_147_483_648);
        assert_eq!(t.name, "");
        assert!(t.when.is_none());
    }

    #[test]
    fn parses_seven_digit_fractions_and_treats_zero_time_as_absent() {
        assert!(time_opt::parse("2026-05-01T10:00:00.1234567Z").is_some());
        assert!(time_opt::parse("2026-05-01T10:00:01+02:00").is_some());
        assert!(time_opt::parse("0001-01-01T00:00:00Z").is_none());
    }

    #[test]
    fn all_caps_keys_are_lowered() {
        assert_eq!(lower_first("ID"), "id");
        assert_eq!(lower_first("RunnerSetting"), "runnerSetting");
        assert_eq!(lower_first("x"), "x");
    }

    #[test]
    fn type_mismatch_is_an_error() {
        assert!(from_slice::<T>(b"{\"messageId\":\"abc\"}").is_err());
    }
}
