//! The eager implementation: plain burn tensor ops, the readable reference.

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

use crate::{AttentionError, AttentionOptions, mask};

/// Attention with plain tensor ops (see [`crate::attention`] for shapes and
/// [`AttentionOptions`] for what is masked).
///
/// K/V heads are repeated for GQA here. Scores are soft-capped, masked and normalized in f32
/// whatever the input dtype (as transformers upcasts its softmax); rows whose keys are all
/// masked produce zeros.
pub fn eager_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    options: &AttentionOptions,
) -> Result<Tensor<B, 4>, AttentionError> {
    let [batch, q_heads, q_len, head_dim] = q.dims();
    let [kb, kv_heads, k_len, kd] = k.dims();
    if k.dims() != v.dims() || kb != batch || kd != head_dim {
        return Err(AttentionError::Shape(format!(
            "q {:?}, k {:?}, v {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    if kv_heads == 0 || q_heads % kv_heads != 0 {
        return Err(AttentionError::Shape(format!(
            "{q_heads} query heads is not a multiple of {kv_heads} key/value heads"
        )));
    }
    options.validate(batch, k_len)?;
    let group = q_heads / kv_heads;
    let (k, v) = if group > 1 {
        (repeat_heads(k, group), repeat_heads(v, group))
    } else {
        (k, v)
    };

    let dtype = q.dtype();
    let scale = options.scale.unwrap_or(1.0 / (head_dim as f64).sqrt());
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
    let half = matches!(dtype, DType::F16 | DType::BF16);
    let scores = if half {
        scores.cast(DType::F32)
    } else {
        scores
    };
    let scores = match options.softcap {
        Some(cap) => scores.div_scalar(cap).tanh().mul_scalar(cap),
        None => scores,
    };
    let probs = match mask::build::<B>(options, batch, q_len, k_len, &scores.device()) {
        None => softmax(scores, 3),
        Some(masked) => {
            let dead = masked.clone().all_dim(3);
            let scores = scores.mask_fill(
                masked.expand([batch, q_heads, q_len, k_len]),
                f32::NEG_INFINITY,
            );
            // A row with every key masked is NaN after softmax: make it zeros.
            softmax(scores, 3).mask_fill(dead.expand([batch, q_heads, q_len, k_len]), 0.0)
        }
    };
    let probs = if half { probs.cast(dtype) } else { probs };
    Ok(probs.matmul(v))
}

/// `[b, h, s, d]` -> `[b, h * n, s, d]`, each head repeated `n` times in place
/// (head `i` of the result reads K/V head `i / n`, as transformers' `repeat_kv`).
fn repeat_heads<B: Backend>(x: Tensor<B, 4>, n: usize) -> Tensor<B, 4> {
    let [b, h, s, d] = x.dims();
    x.reshape([b, h, 1, s, d])
        .expand([b, h, n, s, d])
        .reshape([b, h * n, s, d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    type B = NdArray;

    fn rand(shape: [usize; 4]) -> Tensor<B, 4> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    #[test]
    fn zero_queries_average_the_values() {
        let q = Tensor::<B, 4>::zeros([2, 3, 4, 8], &Default::default());
        let (k, v) = (rand([2, 3, 6, 8]), rand([2, 3, 6, 8]));
        let out = eager_attention(q, k, v.clone(), &AttentionOptions::default()).unwrap();
        let mean = v.mean_dim(2).expand([2, 3, 4, 8]);
        out.into_data()
            .assert_approx_eq::<f32>(&mean.into_data(), Tolerance::default());
    }

    #[test]
    fn causal_first_query_sees_only_the_first_key() {
        let (q, k, v) = (rand([1, 2, 5, 4]), rand([1, 2, 5, 4]), rand([1, 2, 5, 4]));
        let out = eager_attention(q, k, v.clone(), &AttentionOptions::causal()).unwrap();
        let first = out.slice([0..1, 0..2, 0..1, 0..4]);
        first.into_data().assert_approx_eq::<f32>(
            &v.slice([0..1, 0..2, 0..1, 0..4]).into_data(),
            Tolerance::default(),
        );
    }

    #[test]
    fn causal_is_bottom_right_aligned_and_fully_masked_rows_are_zero() {
        // 3 queries, 2 keys: query 0 sees no key (zeros), query 2 sees both.
        let (q, k, v) = (rand([1, 1, 3, 4]), rand([1, 1, 2, 4]), rand([1, 1, 2, 4]));
        let out =
            eager_attention(q.clone(), k.clone(), v.clone(), &AttentionOptions::causal()).unwrap();
        let row0 = out.clone().slice([0..1, 0..1, 0..1, 0..4]).into_data();
        row0.assert_eq(&TensorData::from([[[[0.0f32; 4]]]]), false);
        let full = eager_attention(q, k, v, &AttentionOptions::default()).unwrap();
        out.slice([0..1, 0..1, 2..3, 0..4])
            .into_data()
            .assert_approx_eq::<f32>(
                &full.slice([0..1, 0..1, 2..3, 0..4]).into_data(),
                Tolerance::default(),
            );
    }

    #[test]
    fn gqa_equals_explicitly_repeated_heads() {
        let (q, k, v) = (rand([1, 4, 3, 8]), rand([1, 2, 3, 8]), rand([1, 2, 3, 8]));
        let gqa =
            eager_attention(q.clone(), k.clone(), v.clone(), &AttentionOptions::causal()).unwrap();
        // Query heads 0,1 use K/V head 0; 2,3 use K/V head 1.
        let k_rep = Tensor::cat(
            vec![
                k.clone().slice([0..1, 0..1]),
                k.clone().slice([0..1, 0..1]),
                k.clone().slice([0..1, 1..2]),
                k.slice([0..1, 1..2]),
            ],
            1,
        );
        let v_rep = Tensor::cat(
            vec![
                v.clone().slice([0..1, 0..1]),
                v.clone().slice([0..1, 0..1]),
                v.clone().slice([0..1, 1..2]),
                v.slice([0..1, 1..2]),
            ],
            1,
        );
        let mha = eager_attention(q, k_rep, v_rep, &AttentionOptions::causal()).unwrap();
        gqa.into_data()
            .assert_approx_eq::<f32>(&mha.into_data(), Tolerance::default());
    }

    #[test]
    fn bad_head_counts_are_errors() {
        let err = eager_attention(
            rand([1, 3, 2, 4]),
            rand([1, 2, 2, 4]),
            rand([1, 2, 2, 4]),
            &AttentionOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, AttentionError::Shape(_)), "{err}");
    }
}
