//! Better words for a config that does not deserialize because of a key: the unknown key itself,
//! at its position, with the key that was probably meant.
//!
//! serde reports the first thing it trips over, which for a misspelt key can be far from it:
//! `[[services]]` followed by `[service.health]` fails as "invalid type: map, expected a
//! sequence" at the second, because the first made `service` a table. So when the config does
//! not deserialize, its keys are walked against the shape of the `Raw*` types, and every unknown
//! key (and every list of tables written as a single table) is reported where it is written.
//!
//! The keys each table takes are read from the serde derives themselves (see [`fields_of`]), so
//! they cannot drift from what the parser accepts.

use std::ops::Range;

use serde::Deserialize;
use serde::de::{Error as _, Visitor};
use toml::de::{DeTable, DeValue};

use super::{
    RawAlias, RawApi, RawCluster, RawConfig, RawDns, RawDocker, RawHealth, RawHistory,
    RawPromotion, RawProxy, RawSecondary, RawService, RawState, RawToken, RawTsigKey, RawZone,
};

/// One table of the config as written: the keys it takes and the tables below some of them.
struct Shape {
    keys: &'static [&'static str],
    children: Vec<Child>,
}

struct Child {
    key: &'static str,
    /// Written `[[key]]` (or as an array of inline tables), not `[key]`.
    many: bool,
    shape: Shape,
}

fn shape<'de, T: Deserialize<'de>>(children: Vec<Child>) -> Shape {
    Shape {
        keys: fields_of::<T>(),
        children,
    }
}

fn one(key: &'static str, shape: Shape) -> Child {
    Child {
        key,
        many: false,
        shape,
    }
}

fn many(key: &'static str, shape: Shape) -> Child {
    Child {
        key,
        many: true,
        shape,
    }
}

/// The whole config file, as `RawConfig` reads it.
fn config_shape() -> Shape {
    shape::<RawConfig>(vec![
        one("dns", shape::<RawDns>(vec![])),
        many(
            "zone",
            shape::<RawZone>(vec![many("secondaries", shape::<RawSecondary>(vec![]))]),
        ),
        one(
            "api",
            shape::<RawApi>(vec![many("token", shape::<RawToken>(vec![]))]),
        ),
        one("state", shape::<RawState>(vec![])),
        many(
            "service",
            shape::<RawService>(vec![one("health", shape::<RawHealth>(vec![]))]),
        ),
        many("alias", shape::<RawAlias>(vec![])),
        many("tsig_key", shape::<RawTsigKey>(vec![])),
        one("health", shape::<RawHealth>(vec![])),
        one("promotion", shape::<RawPromotion>(vec![])),
        one("history", shape::<RawHistory>(vec![])),
        many("proxy", shape::<RawProxy>(vec![])),
        one("docker", shape::<RawDocker>(vec![])),
        one("cluster", shape::<RawCluster>(vec![])),
    ])
}

/// The keys a serde-derived struct takes, as its derive names them to the deserializer (so
/// `#[serde(rename)]` is honoured).
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The probe only records the names; the error it ends with is expected.
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

/// A deserializer that answers nothing and notes the fields a struct asks for.
struct FieldProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> serde::Deserializer<'de> for FieldProbe<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(Self::Error::custom("only structs are probed"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(Self::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Every unknown key of `text` and every list of tables written as one table, each with its
/// span and what to write instead, in file order. Empty when the keys are fine (or the text
/// is not TOML, which serde's own message then reports).
pub(super) fn key_problems(text: &str) -> Vec<(Range<usize>, String)> {
    let Ok(root) = DeTable::parse(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(root.get_ref(), &config_shape(), None, &mut out);
    out.sort_by_key(|(span, _)| span.start);
    out
}

/// `table` is where `[name]` (or `[[name]]`) points; `None` is the top level.
fn walk(
    table: &DeTable<'_>,
    shape: &Shape,
    name: Option<(&str, bool)>,
    out: &mut Vec<(Range<usize>, String)>,
) {
    let prefix = name.map_or(String::new(), |(n, _)| format!("{n}."));
    let place = match name {
        None => "at the top level".to_owned(),
        Some((n, true)) => format!("in [[{n}]]"),
        Some((n, false)) => format!("in [{n}]"),
    };
    for (key, value) in table.iter() {
        let key_text: &str = key.get_ref();
        if !shape.keys.contains(&key_text) {
            out.push((key.span(), unknown_key(key_text, shape, &prefix, &place)));
            continue;
        }
        let Some(child) = shape.children.iter().find(|c| c.key == key_text) else {
            continue;
        };
        let full = format!("{prefix}{}", child.key);
        match value.get_ref() {
            DeValue::Table(inner) if child.many => {
                out.push((
                    key.span(),
                    format!(
                        "`{full}` is a list of tables: write each one as [[{full}]] (a table such as [{full}.x] belongs after the [[{full}]] it is part of)"
                    ),
                ));
                walk(inner, &child.shape, Some((&full, true)), out);
            }
            DeValue::Table(inner) => walk(inner, &child.shape, Some((&full, false)), out),
            DeValue::Array(items) => {
                for item in items {
                    if let DeValue::Table(inner) = item.get_ref() {
                        walk(inner, &child.shape, Some((&full, child.many)), out);
                    }
                }
            }
            // A value of the wrong type: serde's message says which type is expected.
            _ => {}
        }
    }
}

/// The message for `key`, unknown in a table of `shape`.
fn unknown_key(key: &str, shape: &Shape, prefix: &str, place: &str) -> String {
    match closest(key, shape.keys) {
        Some(meant) => {
            let hint = match shape.children.iter().find(|c| c.key == meant) {
                Some(c) if c.many => format!(" (each one is written [[{prefix}{meant}]])"),
                _ => String::new(),
            };
            format!("unknown key `{key}` {place}; did you mean `{meant}`?{hint}")
        }
        None => format!(
            "unknown key `{key}` {place}; the keys there are {}",
            shape
                .keys
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The known key `key` is most likely a misspelling of, if one is close enough: the same but
/// for case and `-`/`_`, or a few edits away for a key of some length.
fn closest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let key = norm(key);
    let allowed = (key.chars().count() + 2) / 4;
    known
        .iter()
        .map(|k| (edits(&key, &norm(k)), *k))
        .filter(|(d, _)| *d <= allowed.max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The Levenshtein distance: insertions, deletions and substitutions, one character each.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}
