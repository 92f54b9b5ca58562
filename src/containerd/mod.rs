//! Everything that knows containerd's layout, as one pass over a root:
//! [`inspect`] probes it once into facts, [`plan`] decides (pure) what a command changes,
//! [`apply`] carries that out offline, and [`verify`] audits the re-read facts.
//!
//! Below them, each knowing nothing of the ones above: [`store`] (the content store and
//! `meta.db` schema, pure), [`config`] (the sandbox key edit, pure), [`detect`] (versions
//! read from a root's files, for inspect) and [`versions`] (the one table of releases).

pub mod apply;
pub mod config;
pub mod detect;
pub mod effective;
pub mod inspect;
pub mod plan;
pub mod store;
pub mod verify;
pub mod versions;
