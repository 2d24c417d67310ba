//! Undoing llama.cpp's rotary row permutation of Q and K weights.

use super::GgufError;

/// Inverts llama.cpp's `LlamaModel.permute` on a row-major `[n_rows, cols]` matrix (or a bias,
/// `cols` = 1), where `n_rows = n_head * head_dim`.
///
/// llama.cpp's converter (`convert_hf_to_gguf.py`) reorders each head's rows from HF's
/// "first half / second half" rotary layout to interleaved pairs; GGUF row `h*hd + 2i + j`
/// holds HF row `h*hd + j*hd/2 + i`. This puts the rows back, as transformers'
/// `_reverse_permute_weights` does. Pass `n_head` = `attention.head_count` for `attn_q` and
/// `attention.head_count_kv` for `attn_k`. Needed for `llama` (and Mistral) files; Gemma files
/// are not permuted.
///
/// ```
/// use kiln_models::gguf::unpermute_qk;
/// // One head of dim 4, one column: GGUF rows [a0, b0, a1, b1] -> HF [a0, a1, b0, b1].
/// let out = unpermute_qk(&[0.0, 10.0, 1.0, 11.0], 4, 1).unwrap();
/// assert_eq!(out, vec![0.0, 1.0, 10.0, 11.0]);
/// ```
pub fn unpermute_qk<T: Copy>(
    matrix: &[T],
    n_rows: usize,
    n_head: usize,
) -> Result<Vec<T>, GgufError> {
    let err = |reason: String| GgufError::Permute { reason };
    if n_head == 0 || !n_rows.is_multiple_of(2 * n_head) {
        return Err(err(format!(
            "{n_rows} rows do not split into {n_head} heads of an even dim"
        )));
    }
    if n_rows == 0 || !matrix.len().is_multiple_of(n_rows) {
        return Err(err(format!(
            "{} values do not form {n_rows} rows",
            matrix.len()
        )));
    }
    let cols = matrix.len() / n_rows;
    let head_dim = n_rows / n_head;
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(matrix.len());
    for h in 0..n_head {
        for j in 0..2 {
            for i in 0..half {
                let src = h * head_dim + 2 * i + j;
                out.extend_from_slice(&matrix[src * cols..(src + 1) * cols]);
            }
        }
    }
    Ok(out)
}
