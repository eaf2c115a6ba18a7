//! The domain vocabulary: alias names, service names and endpoints.
//!
//! Each newtype checks its invariants in its constructor, so code that holds one never has to
//! check again. Nothing here does IO.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use hickory_proto::rr::{LowerName, Name};
use serde::{Deserialize, Serialize};

/// Why a name or address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub String);

/// A fully qualified, lower-case DNS name of an alias (for example `web.internal.`).
///
/// It is shown without the trailing dot (`web.internal`), which is how operators type it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AliasName(Name);

impl AliasName {
    /// Resolves `text` to an alias name: a name that ends in a dot is absolute, any other is
    /// taken relative to `origin` (as in a zone file), and a name that already ends in the
    /// origin is accepted as written.
    pub fn resolve(text: &str, origin: &Name) -> Result<Self, InvalidName> {
        let name = parse_dns_name(text)?;
        let mut absolute = name.clone();
        absolute.set_fqdn(true);
        let already_in_origin =
            absolute.num_labels() > origin.num_labels() && origin.zone_of(&absolute);
        let name = if text.ends_with('.') || already_in_origin {
            absolute
        } else {
            name.append_domain(origin)
                .map_err(|e| InvalidName(format!("`{text}` is not a valid DNS name: {e}")))?
        };
        Ok(Self(name.to_lowercase()))
    }

    /// Wraps an already absolute name.
    pub fn from_fqdn(name: &Name) -> Self {
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        Self(name)
    }

    pub fn name(&self) -> &Name {
        &self.0
    }

    pub fn lower(&self) -> LowerName {
        LowerName::new(&self.0)
    }
}

impl fmt::Display for AliasName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_ascii();
        f.write_str(text.strip_suffix('.').unwrap_or(&text))
    }
}

impl Serialize for AliasName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses a DNS name in presentation form and checks that it is usable as an owner name.
pub fn parse_dns_name(text: &str) -> Result<Name, InvalidName> {
    if text.is_empty() || text == "." {
        return Err(InvalidName("a name must not be empty".into()));
    }
    let name = Name::from_ascii(text)
        .map_err(|e| InvalidName(format!("`{text}` is not a valid DNS name: {e}")))?;
    for label in name.iter() {
        if label.is_empty() {
            return Err(InvalidName(format!("`{text}` has an empty label")));
        }
        if label == b"*" {
            return Err(InvalidName(format!(
                "`{text}`: wildcard names are not supported"
            )));
        }
    }
    Ok(name)
}

/// The name of a versioned service, such as `web-v1`.
///
/// Lower-case letters, digits, `-` and `_`, 1 to 63 characters, starting with a letter or digit:
/// the same shape as a DNS label, so a service name can later become part of a name.
///
/// Shared (`Arc<str>`): every endpoint, health entry and alias state names its service, so a
/// clone is a reference count, not a copy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(std::sync::Arc<str>);

impl Serialize for ServiceName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl ServiceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ServiceName {
    type Err = InvalidName;

    fn from_str(text: &str) -> Result<Self, InvalidName> {
        let ok_len = (1..=63).contains(&text.len());
        let ok_first = text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_chars = text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok_len && ok_first && ok_chars {
            Ok(Self(text.into()))
        } else {
            Err(InvalidName(format!(
                "`{text}` is not a valid service name: use 1 to 63 lower-case letters, digits, `-` or `_`, starting with a letter or digit"
            )))
        }
    }
}

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One reachable instance of a service: an IP address and a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Endpoint(SocketAddr);

impl Endpoint {
    pub fn addr(&self) -> SocketAddr {
        self.0
    }
}

impl FromStr for Endpoint {
    type Err = InvalidName;

    fn from_str(text: &str) -> Result<Self, InvalidName> {
        let addr: SocketAddr = text.parse().map_err(|_| {
            InvalidName(format!(
                "`{text}` is not an endpoint: expected IP:PORT, such as 10.0.0.5:8080 or [fd00::5]:8080"
            ))
        })?;
        if addr.port() == 0 {
            return Err(InvalidName(format!(
                "`{text}`: port 0 is not a usable endpoint port"
            )));
        }
        if addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(InvalidName(format!(
                "`{text}`: {} cannot be an endpoint address",
                addr.ip()
            )));
        }
        Ok(Self(addr))
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What [`place_alias`] needs of a zone: its origin and its static names.
pub trait ZoneNames {
    fn origin(&self) -> &Name;
    /// A static owner name at or below `name`, if any, for the message.
    fn static_name_under(&self, name: &LowerName) -> Option<String>;
    /// Where its static names come from, for messages.
    fn describe(&self) -> String;
}

/// Where an alias may live: the zone that holds it, or why it cannot be there. Shared by the
/// config's `[[alias]]` and the API's `PUT /v1/aliases/{alias}`. `others` are the aliases
/// already placed; every check is a few map probes, so placing many aliases stays linear.
pub fn place_alias<Z: ZoneNames, V>(
    name: &AliasName,
    zones: &[Z],
    others: &std::collections::BTreeMap<AliasName, V>,
) -> Result<usize, String> {
    let Some(zone) = zones.iter().position(|z| z.origin().zone_of(name.name())) else {
        let origins: Vec<String> = zones.iter().map(|z| z.origin().to_string()).collect();
        return Err(format!(
            "alias `{name}` is outside every configured zone ({})",
            origins.join(", ")
        ));
    };
    let z = &zones[zone];
    if name.name() == z.origin() {
        return Err(format!("alias `{name}` cannot be the zone apex"));
    }
    if others.contains_key(name) {
        return Err(format!("alias `{name}` is defined twice"));
    }
    // An alias above it: one of its ancestors. An alias below it: in canonical order, the
    // names below `name` come right after it.
    let mut above = name.name().base_name();
    let nested = loop {
        if above.num_labels() == 0 {
            break None;
        }
        if let Some((other, _)) = others.get_key_value(&AliasName::from_fqdn(&above)) {
            break Some(other.clone());
        }
        above = above.base_name();
    }
    .or_else(|| {
        others
            .range(name.clone()..)
            .next()
            .map(|(other, _)| other)
            .filter(|other| name.name().zone_of(other.name()))
            .cloned()
    });
    if let Some(other) = nested {
        return Err(format!(
            "alias `{name}` is nested with alias `{other}`; aliases own every name below them"
        ));
    }
    if let Some(clash) = z.static_name_under(&LowerName::new(name.name())) {
        return Err(format!(
            "alias `{name}` collides with the static name `{clash}` in {}",
            z.describe()
        ));
    }
    Ok(zone)
}

/// Checks an SRV port name: it becomes the label `_<name>` of `_<name>._tcp.<alias>`.
pub fn check_port_name(text: &str) -> Result<(), String> {
    let ok = (1..=62).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "port_name `{text}` must be 1 to 62 lower-case letters, digits or `-` (it becomes `_{text}._tcp`)"
        ))
    }
}

#[cfg(test)]
mod tests;
