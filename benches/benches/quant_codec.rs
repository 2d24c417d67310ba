//! Replaced by the crate owner.
fn main() {}
