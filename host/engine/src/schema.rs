//! Input schemas: which fields a run accepts, of which JSON type, and
//! whether each is required. Checked at the start of every run so a bad
//! input is refused with the field's path before any provider is called.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// JSON type of an input field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// A JSON string.
    String,
    /// Any JSON number.
    Number,
    /// A JSON number without a fractional part.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
}

impl FieldType {
    fn matches(self, v: &Value) -> bool {
        match self {
            Self::String => v.is_string(),
            Self::Number => v.is_number(),
            Self::Integer => v.is_i64() || v.is_u64(),
            Self::Boolean => v.is_boolean(),
            Self::Object => v.is_object(),
            Self::Array => v.is_array(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Object => "object",
            Self::Array => "array",
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// One field of an input schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSchema {
    /// The field's JSON type.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Whether a run must supply it (default `true`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub required: bool,
    /// What the field is, for humans.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl FieldSchema {
    /// A required field of `kind`.
    pub fn required(kind: FieldType) -> Self {
        Self {
            kind,
            required: true,
            description: String::new(),
        }
    }

    /// An optional field of `kind`.
    pub fn optional(kind: FieldType) -> Self {
        Self {
            kind,
            required: false,
            description: String::new(),
        }
    }
}

/// Field name → field schema. An empty schema accepts any object.
pub type InputSchema = BTreeMap<String, FieldSchema>;

/// A run input that does not fit its schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct InputError {
    /// `input.amount`.
    pub path: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

/// Check `input` against `schema`. An empty schema accepts any object; a
/// non-empty one also refuses fields it does not list (a typo should not
/// pass silently).
pub fn validate(schema: &InputSchema, input: &Value) -> Result<(), InputError> {
    let Some(obj) = input.as_object() else {
        return Err(InputError {
            path: "input".into(),
            reason: format!("must be a JSON object, got {}", type_of(input)),
        });
    };
    for (name, field) in schema {
        match obj.get(name) {
            None | Some(Value::Null) if field.required => {
                return Err(InputError {
                    path: format!("input.{name}"),
                    reason: format!("is required ({})", field.kind.name()),
                });
            }
            None | Some(Value::Null) => {}
            Some(v) if !field.kind.matches(v) => {
                return Err(InputError {
                    path: format!("input.{name}"),
                    reason: format!("must be {}, got {}", field.kind.name(), type_of(v)),
                });
            }
            Some(_) => {}
        }
    }
    if !schema.is_empty()
        && let Some(extra) = obj.keys().find(|k| !schema.contains_key(*k))
    {
        let known: Vec<&str> = schema.keys().map(String::as_str).collect();
        return Err(InputError {
            path: format!("input.{extra}"),
            reason: format!(
                "is not a field of this definition (fields: {})",
                known.join(", ")
            ),
        });
    }
    Ok(())
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> InputSchema {
        let mut s = InputSchema::new();
        s.insert("amount".into(), FieldSchema::required(FieldType::Integer));
        s.insert("note".into(), FieldSchema::optional(FieldType::String));
        s
    }

    #[test]
    fn accepts_a_fitting_input() {
        validate(&schema(), &json!({"amount": 10})).unwrap();
        validate(&schema(), &json!({"amount": 10, "note": "x"})).unwrap();
        validate(&InputSchema::new(), &json!({"anything": [1]})).unwrap();
    }

    #[test]
    fn names_the_field_and_the_fix() {
        let e = validate(&schema(), &json!({})).unwrap_err();
        assert_eq!(e.to_string(), "input.amount: is required (integer)");
        let e = validate(&schema(), &json!({"amount": 1.5})).unwrap_err();
        assert_eq!(e.to_string(), "input.amount: must be integer, got number");
        let e = validate(&schema(), &json!({"amount": 1, "amout": 2})).unwrap_err();
        assert_eq!(e.path, "input.amout");
        assert!(e.reason.contains("fields: amount, note"), "{e}");
        let e = validate(&schema(), &json!([1])).unwrap_err();
        assert_eq!(e.to_string(), "input: must be a JSON object, got array");
    }
}
