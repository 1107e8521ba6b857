//! `RUN`'s root filesystems: image layers turned into the directories a step runs on, and
//! what the step changed turned back into a layer's entries.
//!
//! - [`lower`] keeps each base layer unpacked once, by diff_id, as an overlayfs lower
//!   directory; [`unpack`] is the unpack itself (overlay-format whiteouts, exact metadata,
//!   diff_id computed on the way, on `regbuild-fs`'s extraction engine);
//! - [`upper`] turns an overlayfs upper directory (what a step changed) into layer
//!   entries: whiteouts, opaque directories, hard links, kept xattrs;
//! - where overlayfs is unavailable, [`materialize`] applies the lower directories into one
//!   plain root filesystem and [`snapshot`] diffs it after the step, writing the upper
//!   directory overlayfs would have made;
//! - [`scratch`] makes scratch directories that die with their process and finds those a
//!   killed process left; [`tree`] removes trees whatever their modes.
//!
//! Not here: reading and writing tar, extraction's safety rules, compression (`regbuild-fs`),
//! mounting the overlay and running the command (`regbuild-sandbox`), deciding which layers
//! a step needs or caching its result (`regbuild::builder::run`).

pub mod lower;
pub mod materialize;
#[cfg(test)]
mod prerequisite;
pub mod scratch;
pub mod snapshot;
#[cfg(test)]
mod test_spawn;
pub mod tree;
pub mod unpack;
pub mod upper;
