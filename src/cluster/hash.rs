//! A digest of the definitions a node answers from: its zones (origins, SOA and static
//! records), its config services (endpoints, checks) and aliases (targets, port name, policy),
//! the `[health]` defaults, the promotion defaults and the alias and negative TTLs. Two nodes
//! with the same digest answer the same for the same state; a node whose digest differs from
//! the leader's says so (`aliasctl cluster`, `/metrics`) instead of serving other answers
//! silently.
//!
//! The digest is SHA-256 over a text rendering written for this purpose: every map is walked in
//! a sorted order (the zone index is a `HashMap`, so its names are sorted first), and every value
//! is written with `Display` or with the `Debug` of a type whose fields are plain data (numbers,
//! strings, durations, enums), which is the same on every node running the same build. What
//! only describes where a node runs (its state directory, its Docker daemon, its listeners,
//! the history's retention) is left out: nodes may differ there.

use std::fmt::{self, Write};

use sha2::{Digest, Sha256};

use crate::registry::Base;
use crate::zoneindex::ZoneStatics;

/// The hex SHA-256 of `base`'s definitions (see the module's documentation).
pub fn definitions_hash(base: &Base) -> String {
    let mut out = Hasher(Sha256::new());
    // Writing into a hasher cannot fail; `fmt::Result` is only the trait's shape.
    let _ = render(base, &mut out);
    out.0
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// Feeds what is written straight into the digest, so a zone of 100,000 records is never
/// rendered into one string.
struct Hasher(Sha256);

impl Write for Hasher {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

fn render(base: &Base, out: &mut impl Write) -> fmt::Result {
    writeln!(out, "alias_ttl {}", base.alias_ttl)?;
    writeln!(out, "negative_ttl {}", base.negative_ttl)?;
    writeln!(out, "health {:?}", base.default_check)?;
    writeln!(out, "promotion {:?}", base.defaults)?;
    for zone in base.zones.iter() {
        render_zone(zone, out)?;
    }
    for (name, service) in &base.services {
        write!(out, "service {name} check {:?} endpoints", service.check)?;
        for endpoint in &service.endpoints {
            write!(out, " {endpoint}")?;
        }
        writeln!(out)?;
    }
    for (name, alias) in &base.aliases {
        // The zone by its origin, not its index: the index follows the order of `[[zone]]`
        // tables, which does not change an answer.
        let zone = base
            .zones
            .get(alias.zone)
            .map(|z| z.origin.name().to_string())
            .unwrap_or_default();
        write!(
            out,
            "alias {name} zone {zone} port {} if_none_healthy {:?} targets",
            alias.port_name, alias.if_none_healthy
        )?;
        for target in &alias.targets {
            write!(out, " {target}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// A zone: its origin, SOA and serial as written, then every name in wire order (sorted), with
/// its record sets in the order the zone file's sorted map gave them.
fn render_zone(zone: &ZoneStatics, out: &mut impl Write) -> fmt::Result {
    writeln!(
        out,
        "zone {} soa {} ttl {} serial {}",
        zone.origin.name(),
        zone.soa,
        zone.soa_ttl,
        zone.file_serial
    )?;
    let mut names: Vec<_> = zone.index.nodes.iter().collect();
    names.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (_, node) in names {
        for set in &node.rrsets {
            for record in set.records_without_rrsigs() {
                writeln!(out, "{record}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
