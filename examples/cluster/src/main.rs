//! `pubsub` in cluster mode: examples/pubsub.rs (the relay, unchanged, compiled here as a
//! module) plus a [`pubsub::Link`] over Redis pub/sub ([`redis_link`]). Several instances
//! started with the same `--redis` URL share every topic: what a client publishes on one
//! reaches the subscribers of all of them.
//!
//! ```text
//! cargo run --release --manifest-path examples/cluster/Cargo.toml -- 127.0.0.1:9101 \
//!     --redis redis://127.0.0.1:6379 --instance p1
//! ```
//!
//! All of pubsub's options work as they do there (`--rate`, `--max-connections`,
//! `--budget`); `--redis URL` turns cluster mode on, `--instance NAME` names the instance
//! (default: a random name; names must differ within a cluster). Without `--redis` this is
//! the single relay of `cargo run --example pubsub`.
//!
//! **Why a crate of its own.** The Redis client is the `redis` crate (well kept, a sync
//! API, default features off), which pulls in some 35 crates that stdws has nowhere else
//! (`url` and the ICU tables behind `idna`, `combine`, `socket2`, ...). As a dev-dependency
//! of stdws they would be compiled by every `cargo test` of the library, by every user and
//! by CI, for one example. Here they are built only by those who run the cluster
//! (tests/cluster/run does), the library's dependencies stay `sha1_smol` and `base64`, and
//! its dev-dependencies stay as they were. The relay is not copied: this crate compiles
//! `../pubsub.rs` itself, whose `run` takes the link.
//!
//! See `redis_link` for the delivery guarantees.

use std::process::ExitCode;

#[path = "../../pubsub.rs"]
mod pubsub;
mod redis_link;

fn main() -> ExitCode {
    pubsub::run(Some(redis_link::connect))
}
