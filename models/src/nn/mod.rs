//! The small pieces every architecture shares: linear layers, norms, RoPE, MLPs, the KV cache.

mod cache;
mod linear;
mod norm;
mod rope;

pub use cache::{KvCache, LayerCache};
pub use linear::{Linear, LinearFormat};
pub use norm::RmsNorm;
pub use rope::{Rope, RopeScaling};
