//! One integration-test binary: it links once and runs every area against the real `aliasd` and
//! `aliasctl` binaries on loopback sockets.

mod api;
mod browser;
mod cli;
mod cli_promote;
mod cluster;
mod cluster_crash;
mod cluster_docker;
mod cluster_example;
mod cluster_faults;
mod compose;
mod crash;
mod dns;
mod docker;
mod etcd;
mod files;
mod fixtures;
mod gates;
mod lab;
mod layers;
mod limits;
mod persistence;
mod promotion;
mod proxy;
mod readme;
mod readme_text;
mod registry;
mod rollout;
mod secondaries;
mod secondary_servers;
mod split;
mod steps;
mod supervision;
mod support;
mod ui;
mod websocket;
