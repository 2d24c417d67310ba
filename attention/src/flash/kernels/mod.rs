//! The CubeCL kernels.

pub(crate) mod combine;
pub(crate) mod common;
pub(crate) mod mma;
pub(crate) mod plain;
