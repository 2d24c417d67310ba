//! The small pieces every architecture shares: linear layers, norms, RoPE, MLPs, attention,
//! the KV cache.

mod attention;
mod cache;
pub(crate) mod kernels;
mod linear;
mod mlp;
mod norm;
mod rope;

pub use attention::{AttentionSpec, SelfAttention};
pub use cache::{KvCache, LayerCache};
pub(crate) use kernels::argmax_rows;
pub use kernels::device_memory;
pub use linear::{Linear, LinearFormat};
pub use mlp::{Activation, GatedMlp};
pub use norm::RmsNorm;
pub use rope::{Rope, RopeScaling, RopeTables};
