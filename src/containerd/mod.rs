//! Everything that knows containerd's layout: the content store and `meta.db` schema
//! (`store`), its configuration file (`config`) and the offline audit (`verify`).

pub mod config;
pub mod effective;
pub mod store;
pub mod verify;
pub mod versions;
