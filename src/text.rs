//! Small pieces of English shared by what aliasd and aliasctl print: counted nouns ("1 alias",
//! "2 aliases") and bounded lists of known names for "unknown ..." messages.
//!
//! Pure functions with no IO, so the config, the controller, the API and the CLI can all use
//! them and word the same things the same way.

use std::fmt::Display;

/// How many names an "unknown ..." message lists before it says how many more there are: enough
/// to spot a typo among a small setup, short enough to stay one readable line with thousands.
pub const MAX_LISTED: usize = 20;

/// `n` and the noun, singular for exactly one: `counted(1, "alias", "aliases")` is `1 alias`.
pub fn counted(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// `n` and a noun whose plural only adds an `s`: `plural(2, "endpoint")` is `2 endpoints`.
pub fn plural(n: impl Into<u64>, word: &str) -> String {
    counted(n, word, &format!("{word}s"))
}

/// The names, comma-separated, at most [`MAX_LISTED`] of them and then how many more; `none`
/// when there are none. Names come out in the order given.
pub fn known<T: Display>(names: impl IntoIterator<Item = T>) -> String {
    let mut shown = Vec::new();
    let mut more = 0usize;
    for name in names {
        if shown.len() < MAX_LISTED {
            shown.push(name.to_string());
        } else {
            more += 1;
        }
    }
    if shown.is_empty() {
        return "none".to_owned();
    }
    let mut out = shown.join(", ");
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(counted(1u32, "alias", "aliases"), "1 alias");
        assert_eq!(counted(0u32, "alias", "aliases"), "0 aliases");
        assert_eq!(counted(2u64, "alias", "aliases"), "2 aliases");
        assert_eq!(plural(1u32, "endpoint"), "1 endpoint");
        assert_eq!(plural(3u32, "endpoint"), "3 endpoints");
    }

    #[test]
    fn a_known_list_is_bounded_and_says_how_many_it_left_out() {
        assert_eq!(known(Vec::<String>::new()), "none");
        assert_eq!(known(["web-v1", "web-v2"]), "web-v1, web-v2");
        let many: Vec<String> = (0..MAX_LISTED + 5).map(|i| format!("s{i}")).collect();
        let text = known(&many);
        assert!(text.starts_with("s0, s1, "), "{text}");
        assert!(
            text.ends_with(&format!("s{} and 5 more", MAX_LISTED - 1)),
            "{text}"
        );
        assert_eq!(text.matches(", ").count(), MAX_LISTED - 1);
    }
}
