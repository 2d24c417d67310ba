//! JSON inputs as template values.
//!
//! Chat inputs are small JSON objects (a message has 2-5 keys, a tool schema a handful per
//! level), so they become [`JsonMap`]s: insertion-ordered pairs found by a linear scan, which
//! is cheaper to build than a hashed map and keeps Python's dict order.

use std::sync::{Arc, OnceLock};

use minijinja::Value;
use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr};
use serde_json::Value as Json;

use crate::python::JsonOptions;

/// A JSON object as a template map: pairs in insertion order.
///
/// Objects prepared once and rendered many times (tool schemas of a
/// [`PreparedChat`](crate::PreparedChat)) also remember their top-level `tojson` text: the value
/// is immutable, so `json.dumps` of it with the same options gives the same string every render.
#[derive(Debug, Default)]
pub(crate) struct JsonMap(pub Vec<(Value, Value)>, pub Option<DumpsMemo>);

/// The first top-level `tojson` rendering of a prepared object, with the options it used.
pub(crate) type DumpsMemo = OnceLock<(JsonOptions, String)>;

impl Object for JsonMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_rev_enumerator(|this| Box::new(this.0.iter().map(|(k, _)| k.clone())))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// Converts JSON to a template value (objects become [`JsonMap`]s).
pub(crate) fn from_json(v: &Json) -> Value {
    match v {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(items.iter().map(from_json).collect::<Vec<_>>()),
        Json::Object(map) => Value::from_object(JsonMap(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
            None,
        )),
    }
}

/// Like [`from_json`], and a top-level object remembers its `tojson` text (see [`JsonMap`]).
pub(crate) fn from_json_memo(v: &Json) -> Value {
    match v {
        Json::Object(map) => Value::from_object(JsonMap(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
            Some(DumpsMemo::new()),
        )),
        other => from_json(other),
    }
}

/// A map value from pairs (used for messages after normalization).
pub(crate) fn map_from_pairs(pairs: Vec<(Value, Value)>) -> Value {
    Value::from_object(JsonMap(pairs, None))
}
