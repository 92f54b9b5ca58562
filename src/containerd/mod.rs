//! Everything that knows containerd's layout, as one pass over a root:
//! [`inspect`] probes it once into facts, [`plan`] decides (pure) what a command changes,
//! [`apply`] carries that out offline, and [`verify`] audits the re-read facts.
//!
//! Below them, each knowing nothing of the ones above: [`store`] (the content store and
//! `meta.db` schema, pure), [`config`] (the sandbox key edit, pure), [`disabled`] (CRI
//! switched off by `disabled_plugins`, pure), [`detect`] and [`buildinfo`] (versions read
//! from a root's files, for inspect), [`owners`] (the one table of who owns containerd at
//! boot) and [`versions`] (the one table of releases).

pub mod apply;
pub mod buildinfo;
pub mod config;
pub mod detect;
pub mod disabled;
pub mod effective;
pub mod inspect;
pub mod owners;
pub mod plan;
pub mod store;
pub mod verify;
pub mod versions;
