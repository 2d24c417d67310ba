//! The boolean mask every CPU path shares: causal, window and key padding in one tensor.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use crate::{AttentionOptions, KeyPadding};

/// `true` where a score is masked, `[mb, 1, q_len, k_len]` with `mb` the batch when keys are
/// padded, else 1 (broadcast over the batch). `None` when nothing is masked.
///
/// Positions are bottom-right aligned (see [`AttentionOptions`]). The options are assumed
/// validated for `batch` and `k_len`.
pub(crate) fn build<B: Backend>(
    options: &AttentionOptions,
    batch: usize,
    q_len: usize,
    k_len: usize,
    device: &B::Device,
) -> Option<Tensor<B, 4, Bool>> {
    let positional = positional::<B>(options, q_len, k_len, device);
    let padding = options
        .key_padding
        .as_ref()
        .map(|p| padding::<B>(p, batch, k_len, device));
    match (positional, padding) {
        (None, None) => None,
        (Some(m), None) => Some(m.reshape([1, 1, q_len, k_len])),
        (None, Some(p)) => Some(p.expand([batch, 1, q_len, k_len])),
        (Some(m), Some(p)) => {
            let m = m
                .reshape([1, 1, q_len, k_len])
                .expand([batch, 1, q_len, k_len]);
            Some(m.bool_or(p.expand([batch, 1, q_len, k_len])))
        }
    }
}

/// The causal and window part, `[q_len, k_len]`; `None` when neither applies.
fn positional<B: Backend>(
    options: &AttentionOptions,
    q_len: usize,
    k_len: usize,
    device: &B::Device,
) -> Option<Tensor<B, 2, Bool>> {
    let window = options.window;
    if !options.causal && window.is_unbounded() {
        return None;
    }
    // Query i sits at key position i + k_len - q_len.
    let offset = k_len as i64 - q_len as i64;
    let rows = Tensor::<B, 1, Int>::arange(0..q_len as i64, device)
        .reshape([q_len, 1])
        .add_scalar(offset)
        .expand([q_len, k_len]);
    let cols = Tensor::<B, 1, Int>::arange(0..k_len as i64, device)
        .reshape([1, k_len])
        .expand([q_len, k_len]);
    let mut masked: Option<Tensor<B, 2, Bool>> = None;
    let mut add = |m: Tensor<B, 2, Bool>| {
        masked = Some(match masked.take() {
            Some(prev) => prev.bool_or(m),
            None => m,
        });
    };
    if options.causal {
        add(cols.clone().greater(rows.clone()));
    }
    // A side longer than both sequences bounds nothing; clamping keeps 32-bit ints in range.
    let clamp = |side: usize| side.min(q_len + k_len) as i64;
    if let Some(right) = window.right {
        add(cols.clone().greater(rows.clone().add_scalar(clamp(right))));
    }
    if let Some(left) = window.left {
        add(cols.lower(rows.sub_scalar(clamp(left))));
    }
    masked
}

/// The padding part, `[batch, 1, 1, k_len]`, `true` for padding keys.
fn padding<B: Backend>(
    padding: &KeyPadding,
    batch: usize,
    k_len: usize,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let masked: Vec<bool> = (0..batch)
        .flat_map(|b| (0..k_len).map(move |j| !padding.keeps(b, j)))
        .collect();
    Tensor::<B, 2, Bool>::from_bool(TensorData::new(masked, [batch, k_len]), device)
        .reshape([batch, 1, 1, k_len])
}
