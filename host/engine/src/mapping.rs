//! Mappings: how a caller's input becomes a provider's input, and a
//! provider's response becomes the standard output.
//!
//! A mapping is JSON in which strings may reference data:
//! - `$Input{a.b}` — the run's input;
//! - `$Response{x.y}` — the provider's response (output mappings);
//! - `$Sequence{step}{path}` — the output of an earlier step of a feature.
//!
//! Paths are dot-separated; numeric segments index arrays (`items.0.id`); an
//! empty path means the whole value. A string that is exactly one reference
//! keeps the referenced JSON type (`"$Input{amount}"` → `1099`); references
//! inside a longer string are interpolated as text. Mappings are parsed once
//! ([`Mapping::compile`]) and checked there; applying one never re-parses.

use serde_json::{Map, Value};
use std::collections::HashMap;
use thiserror::Error;

/// A mapping that cannot be compiled or applied.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MappingError {
    /// Bad reference syntax, at `at` (a path inside the mapping).
    #[error("{at}: {reason}")]
    Syntax {
        /// Where in the mapping: `options[0].input.amount`.
        at: String,
        /// What is wrong and how to write it.
        reason: String,
    },
    /// The mapping is larger than a mapping may be (define time).
    #[error("{at}: {reason}")]
    TooBig {
        /// Where in the mapping.
        at: String,
        /// Which bound and how to stay within it.
        reason: String,
    },
    /// Applying the mapping would produce more than [`MAX_MAPPED_BYTES`]
    /// (run time): nothing is sent.
    #[error(
        "{at}: the mapping would produce more than {limit} bytes from this data; send a smaller input (or map less of it)"
    )]
    Oversized {
        /// Where in the mapping the bound was crossed.
        at: String,
        /// The bound, bytes.
        limit: usize,
    },
    /// A referenced path is absent from the data.
    #[error("{at}: {source_name}{{{path}}} is missing from the {source_name} data")]
    Missing {
        /// Where in the mapping.
        at: String,
        /// `$Input`, `$Response` or `$Sequence{step}`.
        source_name: String,
        /// The path that was not found.
        path: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Input,
    Response,
    Sequence(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Reference {
    source: Source,
    path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Ref(Reference),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Literal(Value),
    /// A string that is exactly one reference: keeps the JSON type.
    Whole(Reference, String),
    /// Text with references interpolated.
    Template(Vec<Part>, String),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
}

/// Most text (strings and keys, bytes) one mapping may hold.
pub const MAX_MAPPING_TEXT: usize = 64 * 1024;
/// Most references one mapping may hold.
pub const MAX_REFERENCES: usize = 1_000;
/// Most bytes (as JSON text, about) applying one mapping may produce: a
/// template that copies a large input many times is stopped here, before
/// anything is sent.
pub const MAX_MAPPED_BYTES: usize = 4 << 20;

/// What a mapping reads from.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scope<'a> {
    /// The run's input.
    pub input: Option<&'a Value>,
    /// The provider's response.
    pub response: Option<&'a Value>,
    /// Outputs of earlier steps, by step name.
    pub sequence: Option<&'a HashMap<String, Value>>,
    /// Who served each earlier step and under which key, by step name:
    /// `{"provider": …, "idempotency_key": …}` ([`STEP_FIELDS`]).
    pub steps: Option<&'a HashMap<String, Value>>,
}

/// What `$Sequence{step}{…}` reads of a step besides its output: the
/// provider that served it and its idempotency key. An output field of
/// the same name wins (it is read first).
pub const STEP_FIELDS: [&str; 2] = ["provider", "idempotency_key"];

/// A compiled mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    root: Node,
}

impl Mapping {
    /// Compile `template`; `at` names it in errors (`fallbacks.pay.options[0].input`).
    pub fn compile(template: &Value, at: &str) -> Result<Self, MappingError> {
        let mut size = Size::default();
        let root = compile(template, at, &mut size)?;
        if size.text > MAX_MAPPING_TEXT {
            return Err(MappingError::TooBig {
                at: at.to_string(),
                reason: format!(
                    "holds {} bytes of text; a mapping may hold at most {MAX_MAPPING_TEXT}",
                    size.text
                ),
            });
        }
        Ok(Self { root })
    }

    /// Every `$Sequence` reference: the step and the first field of its
    /// path (`None` for the whole output), for define-time checks.
    pub fn sequence_fields(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        visit(&self.root, &mut |r| {
            if let Source::Sequence(s) = &r.source {
                let first = r.path.first().cloned();
                if !out.contains(&(s.clone(), first.clone())) {
                    out.push((s.clone(), first));
                }
            }
        });
        out
    }

    /// The step names `$Sequence` references, for define-time checks.
    pub fn sequence_steps(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (step, _) in self.sequence_fields() {
            if !out.contains(&step) {
                out.push(step);
            }
        }
        out
    }

    /// Whether the mapping reads `$Response`.
    pub fn reads_response(&self) -> bool {
        let mut found = false;
        visit(&self.root, &mut |r| found |= r.source == Source::Response);
        found
    }

    /// The top-level input fields `$Input` references read (`""` for a
    /// reference to the whole input), for checks against a schema.
    pub fn input_fields(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        visit(&self.root, &mut |r| {
            if r.source == Source::Input {
                let f = r.path.first().cloned().unwrap_or_default();
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        });
        out
    }

    /// Produce the mapped value and render it as a string (a JSON string's
    /// text, or the JSON of anything else): for breaker keys.
    pub fn apply_to_string(&self, scope: &Scope<'_>) -> Result<String, MappingError> {
        Ok(match self.apply(scope)? {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }

    /// Produce the mapped value, at most [`MAX_MAPPED_BYTES`] of it.
    pub fn apply(&self, scope: &Scope<'_>) -> Result<Value, MappingError> {
        let mut left = MAX_MAPPED_BYTES;
        apply(&self.root, scope, &mut left)
    }
}

fn visit(node: &Node, f: &mut impl FnMut(&Reference)) {
    match node {
        Node::Literal(_) => {}
        Node::Whole(r, _) => f(r),
        Node::Template(parts, _) => parts.iter().for_each(|p| {
            if let Part::Ref(r) = p {
                f(r)
            }
        }),
        Node::Object(fields) => fields.iter().for_each(|(_, n)| visit(n, f)),
        Node::Array(items) => items.iter().for_each(|n| visit(n, f)),
    }
}

/// What a mapping holds, counted while it compiles.
#[derive(Default)]
struct Size {
    text: usize,
    references: usize,
}

fn compile(v: &Value, at: &str, size: &mut Size) -> Result<Node, MappingError> {
    Ok(match v {
        Value::String(s) => {
            size.text = size.text.saturating_add(s.len());
            compile_string(s, at, size)?
        }
        Value::Object(m) => Node::Object(
            m.iter()
                .map(|(k, v)| {
                    size.text = size.text.saturating_add(k.len());
                    Ok((k.clone(), compile(v, &format!("{at}.{k}"), size)?))
                })
                .collect::<Result<_, _>>()?,
        ),
        Value::Array(a) => Node::Array(
            a.iter()
                .enumerate()
                .map(|(i, v)| compile(v, &format!("{at}[{i}]"), size))
                .collect::<Result<_, _>>()?,
        ),
        other => Node::Literal(other.clone()),
    })
}

const SOURCES: [&str; 3] = ["$Input{", "$Response{", "$Sequence{"];

/// Where the next reference starts in `s`: one pass over it (each `$` is
/// looked at once), so compiling is linear in the text.
fn next_reference(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find('$') {
        let at = from + i;
        if SOURCES.iter().any(|p| s[at..].starts_with(p)) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn compile_string(s: &str, at: &str, size: &mut Size) -> Result<Node, MappingError> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(start) = next_reference(rest) {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_string()));
        }
        size.references += 1;
        if size.references > MAX_REFERENCES {
            return Err(MappingError::TooBig {
                at: at.to_string(),
                reason: format!(
                    "a mapping may hold at most {MAX_REFERENCES} references; map fewer fields, or pass a whole object with one reference (`$Input{{order}}`)"
                ),
            });
        }
        let (reference, len) = parse_reference(&rest[start..], at)?;
        parts.push(Part::Ref(reference));
        rest = &rest[start + len..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(match parts.as_slice() {
        [] => Node::Literal(Value::String(String::new())),
        [Part::Text(t)] => Node::Literal(Value::String(t.clone())),
        [Part::Ref(r)] => Node::Whole(r.clone(), at.to_string()),
        _ => Node::Template(parts, at.to_string()),
    })
}

/// Parse a reference at the start of `s`; returns it and its length.
fn parse_reference(s: &str, at: &str) -> Result<(Reference, usize), MappingError> {
    let syntax = |reason: String| MappingError::Syntax {
        at: at.to_string(),
        reason,
    };
    let braced = |s: &str, from: usize| -> Result<(String, usize), MappingError> {
        let end = s[from..].find('}').ok_or_else(|| {
            syntax(format!(
                "unclosed `{{` in `{s}`; write `$Input{{field.path}}`"
            ))
        })?;
        Ok((s[from..from + end].to_string(), from + end + 1))
    };
    let path = |p: &str| -> Vec<String> {
        if p.is_empty() {
            Vec::new()
        } else {
            p.split('.').map(str::to_string).collect()
        }
    };
    if let Some(after) = s.strip_prefix("$Input{") {
        let (p, end) = braced(s, s.len() - after.len())?;
        return Ok((
            Reference {
                source: Source::Input,
                path: path(&p),
            },
            end,
        ));
    }
    if let Some(after) = s.strip_prefix("$Response{") {
        let (p, end) = braced(s, s.len() - after.len())?;
        return Ok((
            Reference {
                source: Source::Response,
                path: path(&p),
            },
            end,
        ));
    }
    let after = s
        .strip_prefix("$Sequence{")
        .expect("caller found a source prefix");
    let (step, end) = braced(s, s.len() - after.len())?;
    if step.is_empty() {
        return Err(syntax(
            "`$Sequence{}` needs a step name: `$Sequence{step}{path}`".into(),
        ));
    }
    if !s[end..].starts_with('{') {
        return Err(syntax(format!(
            "`$Sequence{{{step}}}` needs a path: `$Sequence{{{step}}}{{field}}` (empty braces for the whole output)"
        )));
    }
    let (p, end) = braced(s, end + 1)?;
    Ok((
        Reference {
            source: Source::Sequence(step),
            path: path(&p),
        },
        end,
    ))
}

fn resolve<'a>(r: &Reference, scope: &Scope<'a>, at: &str) -> Result<&'a Value, MappingError> {
    let root = match &r.source {
        Source::Input => scope.input,
        Source::Response => scope.response,
        Source::Sequence(step) => scope.sequence.and_then(|s| s.get(step)),
    };
    // Named only when missing: a found reference allocates nothing.
    let missing = || MappingError::Missing {
        at: at.to_string(),
        source_name: match &r.source {
            Source::Input => "$Input".to_string(),
            Source::Response => "$Response".to_string(),
            Source::Sequence(step) => format!("$Sequence{{{step}}}"),
        },
        path: r.path.join("."),
    };
    let found = root.and_then(|v| follow(v, &r.path));
    if found.is_none()
        && let Source::Sequence(step) = &r.source
        && let [field] = r.path.as_slice()
        && STEP_FIELDS.contains(&field.as_str())
    {
        return scope
            .steps
            .and_then(|s| s.get(step))
            .and_then(|v| v.get(field))
            .ok_or_else(missing);
    }
    found.ok_or_else(missing)
}

/// The value at `path` under `root`.
fn follow<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = root;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }?;
    }
    Some(cur)
}

/// About how many bytes `v` takes as JSON text, counting no further than
/// `limit` (so weighing a huge value costs no more than the bound).
fn weigh(v: &Value, limit: usize) -> usize {
    // A scalar, the common case, needs no stack.
    match v {
        Value::Null | Value::Bool(_) => return 5,
        Value::Number(_) => return 20,
        Value::String(s) => return s.len().saturating_add(2),
        Value::Array(_) | Value::Object(_) => {}
    }
    let mut total = 0usize;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        total = total.saturating_add(match v {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 20,
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                stack.extend(a.iter());
                a.len() + 2
            }
            Value::Object(m) => {
                for (k, x) in m {
                    total = total.saturating_add(k.len() + 4);
                    stack.push(x);
                }
                2
            }
        });
        if total > limit {
            break;
        }
    }
    total
}

/// Take `n` bytes from what the mapping may still produce.
fn spend(left: &mut usize, n: usize, at: &str) -> Result<(), MappingError> {
    *left = left.checked_sub(n).ok_or_else(|| MappingError::Oversized {
        at: at.to_string(),
        limit: MAX_MAPPED_BYTES,
    })?;
    Ok(())
}

fn apply(node: &Node, scope: &Scope<'_>, left: &mut usize) -> Result<Value, MappingError> {
    Ok(match node {
        Node::Literal(v) => v.clone(),
        Node::Whole(r, at) => {
            let v = resolve(r, scope, at)?;
            spend(left, weigh(v, *left), at)?;
            v.clone()
        }
        Node::Template(parts, at) => {
            let mut out = String::new();
            for p in parts {
                let piece = match p {
                    Part::Text(t) => std::borrow::Cow::Borrowed(t.as_str()),
                    Part::Ref(r) => match resolve(r, scope, at)? {
                        Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
                        other => {
                            spend(left, weigh(other, *left), at)?;
                            std::borrow::Cow::Owned(other.to_string())
                        }
                    },
                };
                spend(left, piece.len(), at)?;
                out.push_str(&piece);
            }
            Value::String(out)
        }
        Node::Object(fields) => {
            let mut m = Map::with_capacity(fields.len());
            for (k, n) in fields {
                m.insert(k.clone(), apply(n, scope, left)?);
            }
            Value::Object(m)
        }
        Node::Array(items) => Value::Array(
            items
                .iter()
                .map(|n| apply(n, scope, left))
                .collect::<Result<_, _>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_references_keep_their_type_and_templates_interpolate() {
        let m = Mapping::compile(
            &json!({
                "amount": "$Input{payment.amount}",
                "currency": "usd",
                "description": "order $Input{order.id} for $Input{payment.amount} cents",
                "items": ["$Input{order.items.0}", 3, true],
                "meta": "$Input{}"
            }),
            "fallbacks.pay.options[0].input",
        )
        .unwrap();
        let input =
            json!({"payment": {"amount": 1099}, "order": {"id": "A7", "items": [{"sku": "x"}]}});
        let out = m
            .apply(&Scope {
                input: Some(&input),
                ..Scope::default()
            })
            .unwrap();
        assert_eq!(out["amount"], json!(1099));
        assert_eq!(out["currency"], "usd");
        assert_eq!(out["description"], "order A7 for 1099 cents");
        assert_eq!(out["items"], json!([{"sku": "x"}, 3, true]));
        assert_eq!(out["meta"], input);
    }

    #[test]
    fn response_and_sequence_references() {
        let m = Mapping::compile(
            &json!({"id": "$Response{id}", "charge": "$Sequence{charge}{output.id}", "all": "$Sequence{charge}{}"}),
            "features.checkout.steps[1].input",
        )
        .unwrap();
        assert!(m.reads_response());
        assert_eq!(m.sequence_steps(), ["charge"]);
        let response = json!({"id": "pi_1"});
        let mut seq = HashMap::new();
        seq.insert("charge".to_string(), json!({"output": {"id": "ch_9"}}));
        let out = m
            .apply(&Scope {
                input: None,
                response: Some(&response),
                sequence: Some(&seq),
                steps: None,
            })
            .unwrap();
        assert_eq!(
            out,
            json!({"id": "pi_1", "charge": "ch_9", "all": {"output": {"id": "ch_9"}}})
        );
    }

    #[test]
    fn missing_paths_name_the_mapping_and_the_path() {
        let m = Mapping::compile(
            &json!({"to": "$Input{customer.phone}"}),
            "quotas.sms.providers[1].input",
        )
        .unwrap();
        let e = m
            .apply(&Scope {
                input: Some(&json!({"customer": {}})),
                ..Scope::default()
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "quotas.sms.providers[1].input.to: $Input{customer.phone} is missing from the $Input data"
        );
    }

    #[test]
    fn syntax_errors_are_caught_at_compile_time() {
        let e = Mapping::compile(&json!({"a": "$Input{x"}), "m").unwrap_err();
        assert!(e.to_string().starts_with("m.a: unclosed"), "{e}");
        let e = Mapping::compile(&json!(["$Sequence{step}"]), "m").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("m[0]: `$Sequence{step}` needs a path"),
            "{e}"
        );
    }

    #[test]
    fn mappings_are_bounded_when_defined_and_when_applied() {
        // Too many references, or too much text: refused at define time.
        let many = "$Input{to}".repeat(MAX_REFERENCES + 1);
        let e = Mapping::compile(&json!({"text": many}), "m").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("m.text: a mapping may hold at most 1000 references"),
            "{e}"
        );
        let long = "x".repeat(MAX_MAPPING_TEXT + 1);
        let e = Mapping::compile(&json!({"text": long}), "m").unwrap_err();
        assert!(e.to_string().contains("bytes of text"), "{e}");

        // Within the bounds at define time, but copying a large input
        // many times: stopped while applying, naming the field.
        let m = Mapping::compile(
            &json!({"ok": "$Input{small}", "text": "$Input{big}".repeat(500)}),
            "fallbacks.sms.options[0].input",
        )
        .unwrap();
        let input = json!({"small": "a", "big": "y".repeat(100 * 1024)});
        let e = m
            .apply(&Scope {
                input: Some(&input),
                ..Scope::default()
            })
            .unwrap_err();
        assert!(
            matches!(&e, MappingError::Oversized { at, .. } if at == "fallbacks.sms.options[0].input.text"),
            "{e}"
        );
        // Whole references count too: an array of many copies of a big
        // object.
        let m = Mapping::compile(&json!(vec!["$Input{}"; 100]), "m").unwrap();
        assert!(matches!(
            m.apply(&Scope {
                input: Some(&input),
                ..Scope::default()
            }),
            Err(MappingError::Oversized { .. })
        ));
        // What fits is produced whole.
        let m = Mapping::compile(&json!({"t": "$Input{big}$Input{big}"}), "m").unwrap();
        let out = m
            .apply(&Scope {
                input: Some(&input),
                ..Scope::default()
            })
            .unwrap();
        assert_eq!(out["t"].as_str().unwrap().len(), 200 * 1024);
    }

    /// Arbitrary JSON, a few levels deep.
    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z$\\{\\}]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Mapping text is written by users (config, API): compiling any
        /// of it, and applying what compiles to any data, answers with a
        /// result, never a panic.
        #[test]
        fn fuzz_mapping_expressions(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "$Input{", "$Response{", "$Sequence{", "}", "{", "a", "b.c", ".", "[0]", "[", "]",
                "x", " ", "$", "$Input{}", "$Sequence{s}{a}", "\\", "[99999999999999999999]",
            ]), 0..12),
            input in json_value(),
            response in json_value(),
            as_object in proptest::prelude::any::<bool>(),
        ) {
            let text: String = pieces.concat();
            let template = if as_object { json!({"k": text, "n": [text, 1]}) } else { Value::String(text) };
            if let Ok(m) = Mapping::compile(&template, "fuzz") {
                let seq: HashMap<String, Value> = [("s".to_string(), response.clone())].into();
                let scope = Scope { input: Some(&input), response: Some(&response), sequence: Some(&seq), steps: None };
                let _ = m.apply(&scope);
                let _ = m.apply_to_string(&scope);
                let _ = m.apply(&Scope::default());
            }
        }
    }
}
