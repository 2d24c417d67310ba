//! JSON inputs as template values.
//!
//! Chat inputs are small JSON objects (a message has 2-5 keys, a tool schema a handful per
//! level), so they become [`JsonMap`]s: insertion-ordered pairs found by a linear scan, which
//! is cheaper to build than a hashed map and keeps Python's dict order. Arrays become
//! [`JsonList`]s. Both keep a few items in place ([`Items`]), so a small container costs one
//! allocation rather than two.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use minijinja::Value;
use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr};
use serde_json::Value as Json;
use smallvec::SmallVec;

use crate::limits::MAX_INPUT_DEPTH;
use crate::python::JsonOptions;

/// The items of a container: up to 4 in place, more on the heap.
pub(crate) type Items<T> = SmallVec<[T; 4]>;

/// A JSON object as a template map: pairs in insertion order.
///
/// Objects prepared once and rendered many times (tool schemas of a
/// [`PreparedChat`](crate::PreparedChat)) also remember their top-level `tojson` text: the value
/// is immutable, so `json.dumps` of it with the same options gives the same string every render.
#[derive(Debug, Default)]
pub(crate) struct JsonMap(pub Items<(Value, Value)>, pub Option<DumpsMemo>);

/// The first top-level `tojson` rendering of a prepared object (a template string), with the
/// options it used.
pub(crate) type DumpsMemo = OnceLock<(JsonOptions, Value)>;

impl JsonMap {
    /// The pairs, in insertion order.
    pub(crate) fn pairs(&self) -> &[(Value, Value)] {
        self.0.as_slice()
    }

    /// The value of the string key `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        lookup(self.pairs(), key)
    }
}

/// The value paired with the string key `key` (the first, scanning in order).
fn lookup<'a>(pairs: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    pairs
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

impl Object for JsonMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get(key.as_str()?).cloned()
    }

    /// `map.name`: jinja2 tries Python's attributes before the keys, so a dict method wins
    /// over a key of the same name (`schema.items` is the method even when the schema has an
    /// `items` key), and the sandbox hides the methods that change the dict. `map['name']`
    /// (minijinja's `get_value`) reads the key.
    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        match key {
            "copy" | "fromkeys" | "get" | "items" | "keys" | "values" => {
                Some(Value::from_object(BoundMethod {
                    receiver: Value::from_dyn_object(self.clone()),
                    name: key.to_owned(),
                }))
            }
            "clear" | "pop" | "popitem" | "setdefault" | "update" => None,
            _ => self.get(key).cloned(),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_rev_enumerator(|this| Box::new(this.pairs().iter().map(|(k, _)| k.clone())))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.pairs().len())
    }
}

/// A method of a dict looked up without calling it (`schema.items`), as Python's bound method:
/// defined, true, callable, with no attributes of its own.
#[derive(Debug)]
pub(crate) struct BoundMethod {
    receiver: Value,
    name: String,
}

impl Object for BoundMethod {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn call(
        self: &Arc<Self>,
        state: &mut minijinja::State<'_, '_>,
        args: &[Value],
    ) -> Result<Value, minijinja::Error> {
        self.receiver.call_method(state, &self.name, args)
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Python adds the object's address, which no template can rely on.
        write!(f, "<built-in method {} of dict object>", self.name)
    }
}

/// A JSON array as a template sequence (as a `Vec<Value>` behaves).
#[derive(Debug, Default)]
pub(crate) struct JsonList(pub Items<Value>);

impl Object for JsonList {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.as_slice().get(key.as_usize()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.as_slice().len())
    }
}

/// The items of a sequence value built by this crate or by minijinja, when it is one.
pub(crate) fn seq_items(value: &Value) -> Option<&[Value]> {
    if let Some(list) = value.downcast_object_ref::<JsonList>() {
        return Some(list.0.as_slice());
    }
    value.downcast_object_ref::<Vec<Value>>().map(Vec::as_slice)
}

/// A JSON input nests deeper than [`MAX_INPUT_DEPTH`].
#[derive(Debug)]
pub(crate) struct TooDeep;

impl TooDeep {
    /// The error for the input `what` (`message 3`, `tools`, ...).
    pub(crate) fn error(self, what: &str) -> crate::Error {
        crate::Error::InvalidInput(format!("{what} nests deeper than {MAX_INPUT_DEPTH} levels"))
    }
}

/// Converts JSON to a template value (objects become [`JsonMap`]s, arrays [`JsonList`]s).
///
/// Inputs nest at most [`MAX_INPUT_DEPTH`] levels, so that nothing walking them later (kiln's
/// printing, minijinja's own) can run out of stack.
pub(crate) fn from_json(v: &Json) -> Result<Value, TooDeep> {
    from_json_at(v, 0)
}

fn from_json_at(v: &Json, depth: usize) -> Result<Value, TooDeep> {
    Ok(match v {
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
        Json::Array(_) | Json::Object(_) if depth >= MAX_INPUT_DEPTH => return Err(TooDeep),
        Json::Array(items) => Value::from_object(JsonList(
            items
                .iter()
                .map(|v| from_json_at(v, depth + 1))
                .collect::<Result<_, _>>()?,
        )),
        Json::Object(map) => Value::from_object(JsonMap(
            map.iter()
                .map(|(k, v)| Ok((Value::from(k.as_str()), from_json_at(v, depth + 1)?)))
                .collect::<Result<_, _>>()?,
            None,
        )),
    })
}

/// Like [`from_json`], and a top-level object remembers its `tojson` text (see [`JsonMap`]).
pub(crate) fn from_json_memo(v: &Json) -> Result<Value, TooDeep> {
    match v {
        Json::Object(map) => Ok(Value::from_object(JsonMap(
            map.iter()
                .map(|(k, v)| Ok((Value::from(k.as_str()), from_json_at(v, 1)?)))
                .collect::<Result<_, _>>()?,
            Some(DumpsMemo::new()),
        ))),
        other => from_json(other),
    }
}

/// A one-shot generator, as Python's `map()` and `filter()` return: the value
/// `Value::make_one_shot_iterator` makes, except that the items not yet taken can be looked at
/// (to check what a template stores in a namespace) without consuming them.
pub(crate) struct Generator(Mutex<std::vec::IntoIter<Value>>);

impl Generator {
    /// A generator over `items`.
    pub(crate) fn new_value(items: Vec<Value>) -> Value {
        Value::from_object(Generator(Mutex::new(items.into_iter())))
    }

    /// The items not yet taken.
    pub(crate) fn remaining(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_slice()
            .to_vec()
    }

    fn next(&self) -> Option<Value> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).next()
    }
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As minijinja prints its iterables.
        f.debug_struct("<iterator>").finish()
    }
}

impl Object for Generator {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Iterable
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let this = self.clone();
        Enumerator::Iter(Box::new(std::iter::from_fn(move || this.next())))
    }
}

/// A map value from pairs (used for messages after normalization).
pub(crate) fn map_from_pairs(pairs: Items<(Value, Value)>) -> Value {
    Value::from_object(JsonMap(pairs, None))
}

/// The arguments transformers passes to the template by name, in [`Root::args`] order.
pub(crate) const ARG_NAMES: [&str; 4] = ["messages", "tools", "documents", "add_generation_prompt"];

/// The template's variables: the arguments (found by name without a scan), then the special
/// tokens and extra variables.
#[derive(Debug)]
pub(crate) struct Root {
    /// The values of [`ARG_NAMES`].
    pub args: [Value; 4],
    /// Special tokens and extra variables, in order; none is named as an argument.
    pub vars: Vec<(Value, Value)>,
}

impl Root {
    fn get(&self, key: &str) -> Option<&Value> {
        match key {
            "messages" => Some(&self.args[0]),
            "tools" => Some(&self.args[1]),
            "documents" => Some(&self.args[2]),
            "add_generation_prompt" => Some(&self.args[3]),
            _ => lookup(&self.vars, key),
        }
    }
}

impl Object for Root {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get(key.as_str()?).cloned()
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.get(key).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_rev_enumerator(|this| {
            Box::new(
                this.vars
                    .iter()
                    .map(|(k, _)| k.clone())
                    .chain(ARG_NAMES.iter().map(|n| Value::from(*n))),
            )
        })
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.vars.len() + ARG_NAMES.len())
    }
}
