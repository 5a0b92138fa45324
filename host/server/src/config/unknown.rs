//! Unknown fields, all at once. The file is walked against the config's
//! own JSON Schema before it is parsed, so every misspelt or foreign field
//! is reported with the field it most likely meant (`event` → `action`),
//! then dropped, and the rest of the file is still checked.

use super::FieldPath;
use serde_json::Value;

/// A field the config does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// Where it is.
    pub path: FieldPath,
    /// The field as written.
    pub key: String,
    /// The field it most likely meant.
    pub suggestion: Option<String>,
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown field `{}`", self.key)?;
        match &self.suggestion {
            Some(s) => write!(f, "; did you mean `{s}`?"),
            None => f.write_str("; remove it (see docs/configuration.md)"),
        }
    }
}

/// Names the reference API (and other routers) use for fields Switchyard
/// calls otherwise.
const SYNONYMS: &[(&str, &str)] = &[
    ("event", "action"),
    ("event_name", "action"),
    ("method", "action"),
    ("application", "app"),
    ("providers", "options"),
    ("fallbacks", "options"),
];

/// Take every field of `table` the schema does not know out (a field with
/// a likely meaning is read as that field, unless it is set too), and say
/// where each was.
pub fn strip(table: &mut toml::Table, schema: &Value) -> Vec<Unknown> {
    let mut out = Vec::new();
    let mut root = toml::Value::Table(std::mem::take(table));
    walk(&mut root, schema, schema, FieldPath::default(), &mut out);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    out
}

fn resolve<'a>(mut schema: &'a Value, root: &'a Value) -> &'a Value {
    // A `$ref` chain of the schema's own `$defs`; bounded, in case of a loop.
    for _ in 0..16 {
        let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
        else {
            break;
        };
        schema = &root["$defs"][name];
    }
    schema
}

/// The fields an object schema knows, and whether it refuses others.
fn fields(schema: &Value) -> (Vec<&str>, bool) {
    let known = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    (
        known,
        schema.get("additionalProperties") == Some(&Value::Bool(false)),
    )
}

/// Of a union's variants, the one a table fits best: fewest fields it
/// would refuse.
fn best_variant<'a>(variants: &'a [Value], root: &'a Value, t: &toml::Table) -> Option<&'a Value> {
    variants
        .iter()
        .map(|v| resolve(v, root))
        .filter(|v| v.get("properties").is_some() || v.get("additionalProperties").is_some())
        .min_by_key(|v| {
            let (known, closed) = fields(v);
            if !closed {
                return 0;
            }
            t.keys().filter(|k| !known.contains(&k.as_str())).count()
        })
}

fn walk(
    value: &mut toml::Value,
    schema: &Value,
    root: &Value,
    path: FieldPath,
    out: &mut Vec<Unknown>,
) {
    let schema = resolve(schema, root);
    for union in ["anyOf", "oneOf"] {
        if let Some(variants) = schema.get(union).and_then(Value::as_array) {
            if let toml::Value::Table(t) = &*value
                && let Some(variant) = best_variant(variants, root, t)
            {
                walk(value, variant, root, path, out);
            }
            return;
        }
    }
    match value {
        toml::Value::Table(t) => {
            let (known, closed) = fields(schema);
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = t.keys().cloned().collect();
            for key in keys {
                let at = path.clone().key(key.clone());
                if let Some(sub) = schema["properties"].get(&key) {
                    if let Some(v) = t.get_mut(&key) {
                        walk(v, sub, root, at, out);
                    }
                } else if let Some(sub) = extra {
                    if let Some(v) = t.get_mut(&key) {
                        walk(v, sub, root, at, out);
                    }
                } else if closed {
                    let suggestion = suggest(&key, &known);
                    let moved = t.remove(&key);
                    // Read as the field it likely meant (when that is not
                    // set too), so the rest of the file is checked as if
                    // fixed: a missing `action` would stop the check.
                    if let (Some(s), Some(v)) = (&suggestion, moved)
                        && !t.contains_key(s)
                    {
                        t.insert(s.clone(), v);
                    }
                    out.push(Unknown {
                        suggestion,
                        path: at,
                        key,
                    });
                }
            }
        }
        toml::Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(v, item, root, path.clone().index(i), out);
                }
            }
        }
        _ => {}
    }
}

/// The known field `key` most likely meant: a synonym from other routers'
/// vocabulary, the field with its unit (`interval` → `interval_ms`), or
/// the closest spelling.
fn suggest(key: &str, known: &[&str]) -> Option<String> {
    let has = |k: &str| known.contains(&k);
    let lower = key.to_ascii_lowercase().replace('-', "_");
    if let Some((_, ours)) = SYNONYMS.iter().find(|(theirs, _)| *theirs == lower)
        && has(ours)
    {
        return Some((*ours).to_string());
    }
    if has(&lower) {
        return Some(lower);
    }
    let with_unit = format!("{lower}_ms");
    if has(&with_unit) {
        return Some(with_unit);
    }
    let limit = (key.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (distance(&lower, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k.to_string())
}

/// Edit distance (insertions, deletions, substitutions).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_know_synonyms_units_and_typos() {
        let known = ["action", "app", "interval_ms", "allow", "provider"];
        assert_eq!(suggest("event", &known).as_deref(), Some("action"));
        assert_eq!(suggest("interval", &known).as_deref(), Some("interval_ms"));
        assert_eq!(suggest("alow", &known).as_deref(), Some("allow"));
        assert_eq!(suggest("Provider", &known).as_deref(), Some("provider"));
        assert_eq!(suggest("zzzzzz", &known), None);
    }
}
