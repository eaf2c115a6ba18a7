//! Sources that change while aliasd runs. Each owns nothing but its own view and sends the
//! controller whole sets: it never touches the snapshot, and a source that loses contact keeps
//! its last set in place and says so.
//!
//! - [`labels`]: how a container's labels and networks become an endpoint (pure);
//! - [`docker`]: list, then follow the events stream, then list again after any break, with
//!   bollard; stops the containers of a retired version when the controller asks.

pub mod docker;
pub mod labels;
