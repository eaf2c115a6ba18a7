//! `ConfigText`: the one builder of the `aliasd.toml` files the integration tests write. Every
//! test starts from the same head (DNS and the API on 127.0.0.1:0, the `internal.` zone of
//! [`crate::support::ZONE`], the test token, state in `state/`, no health checks) and says only
//! what its own config adds or changes, so a new required key or a renamed table is one edit here.

use std::fmt::Display;

use crate::support::{Fixture, TOKEN, TOKEN_NAME};

/// An `aliasd.toml` under construction; [`ConfigText::render`] writes it out.
#[derive(Debug, Clone)]
pub struct ConfigText {
    /// `[dns]` keys and their TOML values, in order.
    dns: Vec<(String, String)>,
    /// Lines added to the `[[zone]]` table of `internal.`.
    zone: String,
    /// `[api] listen`.
    api_listen: String,
    /// Lines added to the `[api]` table.
    api: String,
    /// The body of `[health]`.
    health: String,
    /// Everything after `[health]`: promotion settings, services, aliases, proxies, ...
    rest: String,
}

impl ConfigText {
    /// DNS on 127.0.0.1:0 with one UDP socket and TTLs of 1s, the `internal.` zone, the API on
    /// 127.0.0.1:0 with the test token, state in `state/`, and `[health] kind = "none"` (every
    /// endpoint counts as healthy: nothing is checked).
    pub fn new() -> Self {
        let dns = [
            ("listen", "[\"127.0.0.1:0\"]"),
            ("udp_sockets", "1"),
            ("alias_ttl", "1"),
            ("negative_ttl", "1"),
        ];
        Self {
            dns: dns
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            zone: String::new(),
            api_listen: "127.0.0.1:0".to_owned(),
            api: String::new(),
            health: "kind = \"none\"\n".to_owned(),
            rest: String::new(),
        }
    }

    /// Sets the `[dns]` key `key` to the TOML value `value` (written as given: quote strings).
    pub fn dns(mut self, key: &str, value: impl Display) -> Self {
        let value = value.to_string();
        match self.dns.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.dns.push((key.to_owned(), value)),
        }
        self
    }

    /// Leaves the `[dns]` key `key` out, so aliasd's default applies.
    pub fn dns_default(mut self, key: &str) -> Self {
        self.dns.retain(|(k, _)| k != key);
        self
    }

    /// Adds TOML lines to the zone's table (`secondaries = [...]`, `transfer_allow = [...]`).
    pub fn zone(mut self, lines: &str) -> Self {
        push_lines(&mut self.zone, lines);
        self
    }

    /// Sets `[api] listen` (127.0.0.1:0 unless set): a cluster's nodes each listen on their own
    /// address, which the others reach.
    pub fn api_listen(mut self, addr: impl Display) -> Self {
        self.api_listen = addr.to_string();
        self
    }

    /// Adds TOML lines to `[api]` (`header_timeout = "60s"`, ...).
    pub fn api(mut self, lines: &str) -> Self {
        push_lines(&mut self.api, lines);
        self
    }

    /// Replaces the body of `[health]`.
    pub fn health(mut self, body: &str) -> Self {
        self.health.clear();
        push_lines(&mut self.health, body);
        self
    }

    /// Appends TOML after `[health]`: whole tables such as `[promotion]`, `[[proxy]]` or
    /// `[docker]`.
    pub fn section(mut self, toml: &str) -> Self {
        self.rest.push('\n');
        push_lines(&mut self.rest, toml);
        self
    }

    /// A `[[service]]` with these endpoints.
    pub fn service<E: Display>(self, name: &str, endpoints: impl IntoIterator<Item = E>) -> Self {
        let endpoints = quoted(endpoints);
        self.section(&format!(
            "[[service]]\nname = \"{name}\"\nendpoints = [{endpoints}]"
        ))
    }

    /// An `[[alias]]` linking these services.
    pub fn alias<T: Display>(self, name: &str, targets: impl IntoIterator<Item = T>) -> Self {
        let targets = quoted(targets);
        self.section(&format!(
            "[[alias]]\nname = \"{name}\"\ntargets = [{targets}]"
        ))
    }

    /// The config as TOML.
    pub fn render(&self) -> String {
        let dns: String = self
            .dns
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        format!(
            "[dns]\n{dns}\n[[zone]]\norigin = \"internal.\"\nfile = \"internal.zone\"\n{zone}\n\
             [api]\nlisten = \"{api_listen}\"\n{api}\n\
             [[api.token]]\nname = \"{TOKEN_NAME}\"\nsecret = \"{TOKEN}\"\n\n\
             [state]\ndir = \"state\"\n\n[health]\n{health}{rest}",
            zone = self.zone,
            api_listen = self.api_listen,
            api = self.api,
            health = self.health,
            rest = self.rest,
        )
    }

    /// A fixture directory with this config and the standard zone file.
    pub fn fixture(&self) -> Fixture {
        Fixture::with_config_text(&self.render())
    }
}

/// `items` as a TOML array's inside: `"a", "b"`.
fn quoted<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Appends `lines` to `to`, ending with a newline.
fn push_lines(to: &mut String, lines: &str) {
    let lines = lines.trim_matches('\n');
    if !lines.is_empty() {
        to.push_str(lines);
        to.push('\n');
    }
}
