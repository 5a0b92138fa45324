//! Field paths in a config file and the line they sit on, so an error can
//! say `switchyard.toml:42: products.pay.fallbacks.card.options[1].weight`.

use std::fmt;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A field path: `products.pay.apps.stripe.envs.dev.allow[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// The path of these keys.
    pub fn keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self(
            keys.into_iter()
                .map(|k| Segment::Key(k.to_string()))
                .collect(),
        )
    }

    /// This path and a key.
    pub fn key(mut self, k: impl Into<String>) -> Self {
        self.0.push(Segment::Key(k.into()));
        self
    }

    /// This path and an index.
    pub fn index(mut self, i: usize) -> Self {
        self.0.push(Segment::Index(i));
        self
    }

    /// This path and an engine error path relative to it
    /// (`options[1].input.amount`).
    pub fn join_dotted(mut self, rest: &str) -> Self {
        for part in rest.split('.').filter(|p| !p.is_empty()) {
            let (name, mut indexes) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !name.is_empty() {
                self.0.push(Segment::Key(name.to_string()));
            }
            while let Some(end) = indexes.find(']') {
                if let Ok(n) = indexes[1..end].parse() {
                    self.0.push(Segment::Index(n));
                }
                indexes = &indexes[end + 1..];
            }
        }
        self
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line of byte `offset` in `source`.
pub fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// The line of the deepest part of `path` that exists in `source` (the
/// key itself where it can be found, else its table).
pub fn locate(source: &str, path: &FieldPath) -> Option<usize> {
    let doc = toml_edit::Document::parse(source).ok()?;
    let mut item: &toml_edit::Item = doc.as_item();
    let mut best: Option<usize> = None;
    for seg in &path.0 {
        let (next, key_span) = match seg {
            Segment::Key(k) => {
                let key_span = item
                    .as_table_like()
                    .and_then(|t| t.key(k))
                    .and_then(|k| k.span());
                (item.get(k.as_str()), key_span)
            }
            Segment::Index(n) => (item.get(*n), None),
        };
        let Some(next) = next else { break };
        if let Some(span) = key_span.or_else(|| next.span()) {
            best = Some(span.start);
        }
        item = next;
    }
    best.map(|o| line_of(source, o))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = r#"[server]
listen = "x"

[products.pay.fallbacks.card]
options = [
  { provider = "a", app = "a", action = "x" },
  { provider = "b", app = "b", action = "x",
    weight = 3 },
]
"#;

    #[test]
    fn finds_the_line_of_nested_keys_and_array_items() {
        let p = FieldPath::keys(["products", "pay", "fallbacks", "card"]);
        assert_eq!(locate(SRC, &p), Some(4));
        let w = p.clone().join_dotted("options[1].weight");
        assert_eq!(
            w.to_string(),
            "products.pay.fallbacks.card.options[1].weight"
        );
        assert_eq!(locate(SRC, &w), Some(8));
        // A key that is not there: the deepest one that is.
        let missing = p.join_dotted("options[0].input.amount");
        assert_eq!(locate(SRC, &missing), Some(6));
        assert_eq!(locate(SRC, &FieldPath::keys(["server", "listen"])), Some(2));
    }
}
