//! aliasd: an authoritative DNS server for service aliases, with blue/green relinking.
//!
//! Data flows one way (see ARCHITECTURE.md):
//!
//! - [`config`] and [`zonefile`] read and check what the operator wrote;
//! - [`discovery`] follows Docker and sends whole endpoint sets; the API defines services and
//!   aliases too; [`registry`] merges these sources into one [`registry::Topology`];
//! - [`controller`] is the only writer: it checks each change, stores it durably
//!   ([`controller::store`]) and only then publishes a new [`snapshot::Snapshot`];
//! - [`dns`], [`proxy`] and [`api`] only read snapshots, lock-free;
//! - [`health`] checks endpoints and tells the controller when their health changes;
//! - [`daemon`] binds the listeners and wires the tasks; [`demo`] runs it all on loopback;
//! - [`client`] is the typed API client used by `aliasctl` and the tests;
//! - [`cli`] is `aliasctl` itself: its commands, the `--wait` follower, `watch` and the tables.
//!
//! The vocabulary shared by all of them has no IO: [`model`] (names, endpoints), [`check`]
//! (health-check settings and health), [`clock`] (the one place the wall clock is read), [`text`]
//! (counted nouns and bounded lists of names, worded once for every message), [`steps`] (the
//! weighted steps of a promotion and which clients a weight puts on the new version). [`gates`]
//! judges a step on what the front proxy measured of the new version against the old.

pub mod api;
pub mod backend;
pub mod bounds;
pub mod check;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod conns;
pub mod controller;
pub mod daemon;
pub mod demo;
pub mod discovery;
pub mod dns;
pub mod gates;
pub mod health;
pub mod metrics;
pub mod model;
pub mod probe;
pub mod proxy;
pub mod registry;
pub mod secondaries;
pub mod serial;
pub mod snapshot;
pub mod state;
pub mod steps;
pub mod supervise;
#[cfg(test)]
pub(crate) mod testkit;
pub mod text;
pub mod wire;
pub mod zonefile;
pub mod zoneindex;
