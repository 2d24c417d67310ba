//! The subcommands.

pub mod inspect;
