//! Cutting text that came from a provider. Provider bytes are hostile
//! input: a cut by bytes (`String::truncate(n)`) panics when byte `n` falls
//! inside a multi-byte character, and a panic after a request was sent is
//! an `ambiguous` outcome. Cut with [`cut`] instead.

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn never_splits_a_character() {
        let s = format!("{}é", "a".repeat(511));
        assert_eq!(cut(&s, 512), "a".repeat(511));
        let dash = format!("{}—x", "b".repeat(298));
        assert_eq!(cut(&dash, 299), "b".repeat(298));
        assert_eq!(cut(&dash, 301), format!("{}—", "b".repeat(298)));
        for n in 0..8 {
            assert!(cut("😀é", n).len() <= n);
        }
    }
}
