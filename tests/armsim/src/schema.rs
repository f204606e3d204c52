//! A small validator for request bodies, with the rules of the swagger definitions
//! netstep's operations use embedded in code (armsim must run without the spec files).
//!
//! Binding follows the Network RP: unknown members and wrong JSON types are rejected with
//! the same wording its JSON binder uses; read-only members are accepted and ignored.

use serde_json::Value;

#[derive(Debug, Clone)]
pub enum S {
    Any,
    Str,
    Bool,
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    /// Named enum (the swagger type name appears in error messages).
    Enum(&'static str, &'static [&'static str]),
    Arr(Box<S>),
    /// Named object: (member, required, schema).
    Obj(&'static str, Vec<F>),
    /// Free-form object (tags, metadata).
    Map,
    /// Read-only member: accepted, ignored.
    ReadOnly,
    /// Discriminated union: discriminator member, (value, schema) pairs.
    Union(&'static str, &'static str, Vec<(&'static str, S)>),
    /// A string with a maximum length.
    StrMax(usize),
}

#[derive(Debug, Clone)]
pub struct F {
    pub name: &'static str,
    pub required: bool,
    pub schema: S,
}

pub fn f(name: &'static str, schema: S) -> F {
    F {
        name,
        required: false,
        schema,
    }
}
pub fn req(name: &'static str, schema: S) -> F {
    F {
        name,
        required: true,
        schema,
    }
}
pub fn ro(name: &'static str) -> F {
    F {
        name,
        required: false,
        schema: S::ReadOnly,
    }
}
pub fn arr(s: S) -> S {
    S::Arr(Box::new(s))
}
pub fn int(min: i64, max: i64) -> S {
    S::Int {
        min: Some(min),
        max: Some(max),
    }
}
pub fn any_int() -> S {
    S::Int {
        min: None,
        max: None,
    }
}
pub fn sub_resource() -> S {
    S::Obj("SubResource", vec![f("id", S::Str)])
}
pub const BOOL_STRING: &[&str] = &["False", "True"];

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "Integer",
        Value::Number(_) => "Float",
        Value::String(_) => "String",
        Value::Array(_) => "StartArray",
        Value::Object(_) => "StartObject",
    }
}

fn join(path: &str, m: &str) -> String {
    if path.is_empty() {
        m.to_string()
    } else {
        format!("{path}.{m}")
    }
}

/// Validates `v` against `s`; the error is the binder's message.
pub fn validate(v: &Value, s: &S, path: &str) -> Result<(), String> {
    match s {
        S::Any | S::ReadOnly => Ok(()),
        S::Str => match v {
            Value::String(_) | Value::Null => Ok(()),
            _ => Err(format!(
                "Unexpected token {} when parsing string. Path '{path}'.",
                kind_of(v)
            )),
        },
        S::StrMax(n) => match v {
            Value::String(x) if x.chars().count() > *n => Err(format!(
                "The value of '{path}' exceeds the maximum length of {n} characters."
            )),
            Value::String(_) | Value::Null => Ok(()),
            _ => Err(format!(
                "Unexpected token {} when parsing string. Path '{path}'.",
                kind_of(v)
            )),
        },
        S::Bool => match v {
            Value::Bool(_) | Value::Null => Ok(()),
            _ => Err(format!(
                "Error converting value {v} to type 'System.Boolean'. Path '{path}'."
            )),
        },
        S::Int { min, max } => {
            let Some(n) = v.as_i64() else {
                if v.is_null() {
                    return Ok(());
                }
                return Err(format!(
                    "Error converting value {v} to type 'System.Int32'. Path '{path}'."
                ));
            };
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                return Err(format!(
                    "The value {n} of '{path}' is out of range; it must be between {} and {}.",
                    min.map_or("-inf".into(), |m| m.to_string()),
                    max.map_or("inf".into(), |m| m.to_string())
                ));
            }
            Ok(())
        }
        S::Enum(name, vals) => match v {
            Value::String(x) if vals.contains(&x.as_str()) => Ok(()),
            Value::String(x) if vals.iter().any(|c| c.eq_ignore_ascii_case(x)) => Ok(()),
            Value::Null => Ok(()),
            _ => Err(format!(
                "Error converting value {v} to type '{name}'. Allowed values: {}. Path '{path}'.",
                vals.join(", ")
            )),
        },
        S::Arr(item) => match v {
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    validate(x, item, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            Value::Null => Ok(()),
            _ => Err(format!(
                "Unexpected token {} when parsing an array. Path '{path}'.",
                kind_of(v)
            )),
        },
        S::Map => match v {
            Value::Object(_) | Value::Null => Ok(()),
            _ => Err(format!(
                "Unexpected token {} when parsing an object. Path '{path}'.",
                kind_of(v)
            )),
        },
        S::Obj(name, fields) => {
            let Some(o) = v.as_object() else {
                if v.is_null() {
                    return Ok(());
                }
                return Err(format!(
                    "Unexpected token {} when parsing '{name}'. Path '{path}'.",
                    kind_of(v)
                ));
            };
            for (k, x) in o {
                let Some(fd) = fields.iter().find(|fd| fd.name.eq_ignore_ascii_case(k)) else {
                    return Err(format!(
                        "Could not find member '{k}' on object of type '{name}'. Path '{}'.",
                        join(path, k)
                    ));
                };
                validate(x, &fd.schema, &join(path, k))?;
            }
            for fd in fields.iter().filter(|fd| fd.required) {
                let present = o
                    .iter()
                    .any(|(k, x)| k.eq_ignore_ascii_case(fd.name) && !x.is_null());
                if !present {
                    return Err(format!(
                        "Required property '{}' not found in JSON. Path '{path}'.",
                        fd.name
                    ));
                }
            }
            Ok(())
        }
        S::Union(name, disc, variants) => {
            let Some(o) = v.as_object() else {
                return Err(format!(
                    "Unexpected token {} when parsing '{name}'. Path '{path}'.",
                    kind_of(v)
                ));
            };
            let Some(d) = o.get(*disc).and_then(Value::as_str) else {
                return Err(format!(
                    "Required property '{disc}' not found in JSON. Path '{path}'."
                ));
            };
            let Some((_, s)) = variants.iter().find(|(n, _)| n.eq_ignore_ascii_case(d)) else {
                let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "Error converting value \"{d}\" to type '{name}'. Allowed values: {}. Path '{}'.",
                    names.join(", "),
                    join(path, disc)
                ));
            };
            validate(v, s, path)
        }
    }
}

/// Drops read-only members (per the schema) from a request body, recursively.
pub fn strip_read_only(v: &mut Value, s: &S) {
    match (v, s) {
        (Value::Object(o), S::Obj(_, fields)) => {
            o.retain(|k, _| {
                !fields
                    .iter()
                    .any(|fd| fd.name.eq_ignore_ascii_case(k) && matches!(fd.schema, S::ReadOnly))
            });
            for (k, x) in o.iter_mut() {
                if let Some(fd) = fields.iter().find(|fd| fd.name.eq_ignore_ascii_case(k)) {
                    strip_read_only(x, &fd.schema);
                }
            }
        }
        (v @ Value::Object(_), S::Union(_, disc, variants)) => {
            let d = v.get(*disc).and_then(Value::as_str).map(str::to_string);
            if let Some((_, s)) =
                d.and_then(|d| variants.iter().find(|(n, _)| n.eq_ignore_ascii_case(&d)))
            {
                strip_read_only(v, s);
            }
        }
        (Value::Array(a), S::Arr(item)) => {
            for x in a {
                strip_read_only(x, item);
            }
        }
        _ => {}
    }
}
