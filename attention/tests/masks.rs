//! Causal, window, soft-cap and padding semantics of the CPU paths, against a plain loop
//! reference written here, hand-checked cases, and sdpa == eager over random cases.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use burn::backend::NdArray;
use burn::tensor::{Tensor, TensorData};
use kiln_attention::{
    AttentionError, AttentionImpl, AttentionOptions, KeyPadding, Window, attention,
};
use proptest::prelude::*;

type B = NdArray;

/// A host tensor `[b, h, s, d]`.
#[derive(Debug, Clone)]
struct Host {
    shape: [usize; 4],
    data: Vec<f32>,
}

impl Host {
    fn at(&self, b: usize, h: usize, s: usize, d: usize) -> f64 {
        let [_, hh, ss, dd] = self.shape;
        f64::from(self.data[((b * hh + h) * ss + s) * dd + d])
    }

    fn tensor(&self) -> Tensor<B, 4> {
        Tensor::from_data(
            TensorData::new(self.data.clone(), self.shape),
            &Default::default(),
        )
    }
}

/// Straight from the definition in `AttentionOptions`' docs, in f64.
fn reference(q: &Host, k: &Host, v: &Host, o: &AttentionOptions) -> Vec<f32> {
    let [batch, q_heads, q_len, d] = q.shape;
    let [_, kv_heads, k_len, _] = k.shape;
    let group = q_heads / kv_heads;
    let scale = o.scale.unwrap_or(1.0 / (d as f64).sqrt());
    let mut out = Vec::with_capacity(batch * q_heads * q_len * d);
    for b in 0..batch {
        for h in 0..q_heads {
            let kh = h / group;
            for i in 0..q_len {
                let p = (i + k_len) as i64 - q_len as i64;
                let visible: Vec<usize> = (0..k_len)
                    .filter(|&j| {
                        let j = j as i64;
                        (!o.causal || j <= p)
                            && o.window.left.is_none_or(|l| j >= p - l as i64)
                            && o.window.right.is_none_or(|r| j <= p + r as i64)
                    })
                    .filter(|&j| o.key_padding.as_ref().is_none_or(|m| m.keeps(b, j)))
                    .collect();
                let scores: Vec<f64> = visible
                    .iter()
                    .map(|&j| {
                        let s = (0..d)
                            .map(|x| q.at(b, h, i, x) * k.at(b, kh, j, x))
                            .sum::<f64>()
                            * scale;
                        match o.softcap {
                            Some(c) => c * (s / c).tanh(),
                            None => s,
                        }
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                for x in 0..d {
                    let acc: f64 = visible
                        .iter()
                        .zip(&exps)
                        .map(|(&j, e)| e / sum * v.at(b, kh, j, x))
                        .sum();
                    out.push(if visible.is_empty() { 0.0 } else { acc as f32 });
                }
            }
        }
    }
    out
}

fn run(which: AttentionImpl, q: &Host, k: &Host, v: &Host, o: &AttentionOptions) -> Vec<f32> {
    attention(which, q.tensor(), k.tensor(), v.tensor(), o)
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            assert!(x.is_finite() && y.is_finite(), "{x} vs {y}");
            (x - y).abs()
        })
        .fold(0.0, f32::max)
}

/// Deterministic pseudo-random values in [-1.5, 1.5).
fn host(shape: [usize; 4], seed: u64) -> Host {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data = (0..shape.iter().product::<usize>())
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 3.0 - 1.5
        })
        .collect();
    Host { shape, data }
}

/// Value rows `0..n` of a `[1, 1, n, d]` tensor, averaged over `rows`.
fn mean_rows(v: &Host, rows: &[usize]) -> Vec<f32> {
    let d = v.shape[3];
    (0..d)
        .map(|x| (rows.iter().map(|&j| v.at(0, 0, j, x)).sum::<f64>() / rows.len() as f64) as f32)
        .collect()
}

/// With all-zero queries every visible key scores the same, so each output row is the mean of
/// the visible value rows: the masks can be read off the output.
fn check_visible_sets(o: &AttentionOptions, q_len: usize, k_len: usize, want: &[&[usize]]) {
    let d = 4;
    let q = Host {
        shape: [1, 1, q_len, d],
        data: vec![0.0; q_len * d],
    };
    let k = host([1, 1, k_len, d], 1);
    let v = host([1, 1, k_len, d], 2);
    for which in [AttentionImpl::Eager, AttentionImpl::Sdpa] {
        let out = run(which, &q, &k, &v, o);
        for (i, rows) in want.iter().enumerate() {
            let got = &out[i * d..(i + 1) * d];
            let expected = if rows.is_empty() {
                vec![0.0; d]
            } else {
                mean_rows(&v, rows)
            };
            assert!(
                max_abs_diff(got, &expected) < 1e-6,
                "{which} {o:?} query {i}: {got:?} vs rows {rows:?}"
            );
        }
    }
}

#[test]
fn sliding_window_sees_itself_and_the_keys_before_it() {
    // transformers' sliding_window = 2: a query sees itself and one key before.
    let o = AttentionOptions::causal().with_window(Window::sliding(2));
    check_visible_sets(&o, 4, 4, &[&[0], &[0, 1], &[1, 2], &[2, 3]]);
    // Bottom-right alignment: 2 queries after 3 cached keys sit at positions 3 and 4.
    let o = AttentionOptions::causal().with_window(Window::sliding(3));
    check_visible_sets(&o, 2, 5, &[&[1, 2, 3], &[2, 3, 4]]);
}

#[test]
fn two_sided_window_without_causal() {
    let o = AttentionOptions::default().with_window(Window {
        left: Some(1),
        right: Some(1),
    });
    check_visible_sets(&o, 4, 4, &[&[0, 1], &[0, 1, 2], &[1, 2, 3], &[2, 3]]);
    let o = AttentionOptions::default().with_window(Window {
        left: None,
        right: Some(0),
    });
    // Right bound 0 without `causal` is causal.
    check_visible_sets(&o, 3, 3, &[&[0], &[0, 1], &[0, 1, 2]]);
}

#[test]
fn left_padding_masks_keys_and_gives_zero_rows() {
    // Keys 0 and 1 are padding; queries 0 and 1 (padding themselves) see nothing.
    let o = AttentionOptions::causal().with_key_padding(KeyPadding::left(&[2], 4));
    check_visible_sets(&o, 4, 4, &[&[], &[], &[2], &[2, 3]]);
    // Padding anywhere, with a window.
    let o = AttentionOptions::causal()
        .with_window(Window::sliding(3))
        .with_key_padding(KeyPadding::Mask {
            k_len: 5,
            keep: vec![true, false, true, true, false],
        });
    check_visible_sets(&o, 5, 5, &[&[0], &[0], &[0, 2], &[2, 3], &[2, 3]]);
    // Right padding by lengths.
    let o = AttentionOptions::default().with_key_padding(KeyPadding::Lengths(vec![2]));
    check_visible_sets(&o, 2, 4, &[&[0, 1], &[0, 1]]);
}

#[test]
fn softcap_matches_the_formula_and_keeps_masked_keys_masked() {
    // One query, two keys: scores (a * scale, 0); softcap c turns the first into c*tanh(a*scale/c).
    let (a, scale, cap) = (6.0f32, 0.5f64, 2.0f64);
    let q = Host {
        shape: [1, 1, 1, 2],
        data: vec![a, 0.0],
    };
    let k = Host {
        shape: [1, 1, 3, 2],
        data: vec![1.0, 0.0, 0.0, 0.0, 5.0, 5.0],
    };
    let v = Host {
        shape: [1, 1, 3, 2],
        data: vec![1.0, 0.0, 0.0, 1.0, 100.0, 100.0],
    };
    // The third key is padding: were it unmasked, its value 100 would show.
    let o = AttentionOptions::default()
        .with_scale(scale)
        .with_softcap(cap)
        .with_key_padding(KeyPadding::Lengths(vec![2]));
    let s0 = cap * (f64::from(a) * scale / cap).tanh();
    let p0 = 1.0 / (1.0 + (-s0).exp());
    let want = [p0 as f32, (1.0 - p0) as f32];
    for which in [AttentionImpl::Eager, AttentionImpl::Sdpa] {
        let got = run(which, &q, &k, &v, &o);
        assert!(
            max_abs_diff(&got, &want) < 1e-6,
            "{which}: {got:?} vs {want:?}"
        );
    }
    // Without the cap the first key weighs sigmoid(3), visibly more.
    let uncapped = AttentionOptions {
        softcap: None,
        ..o.clone()
    };
    let plain = run(AttentionImpl::Eager, &q, &k, &v, &uncapped);
    assert!((plain[0] - (1.0 / (1.0 + (-3.0f64).exp())) as f32).abs() < 1e-6);
    assert!(plain[0] - want[0] > 1e-2);
}

#[test]
fn bad_options_are_errors() {
    let (q, k) = (host([2, 1, 3, 4], 1), host([2, 1, 3, 4], 2));
    let cases = [
        AttentionOptions::default().with_softcap(0.0),
        AttentionOptions::default().with_softcap(f64::NAN),
        AttentionOptions::default().with_key_padding(KeyPadding::Lengths(vec![3])),
        AttentionOptions::default().with_key_padding(KeyPadding::Lengths(vec![3, 4])),
        AttentionOptions::default().with_key_padding(KeyPadding::left(&[0, 1], 2)),
    ];
    for o in cases {
        for which in [AttentionImpl::Eager, AttentionImpl::Sdpa] {
            let err = attention(which, q.tensor(), k.tensor(), k.tensor(), &o).unwrap_err();
            assert!(matches!(err, AttentionError::Options(_)), "{o:?}: {err}");
        }
    }
}

/// A random case: shapes, options and the seed of the values.
fn case() -> impl Strategy<Value = ([usize; 4], [usize; 4], AttentionOptions, u64)> {
    (
        1usize..4,                                                  // batch
        prop::sample::select(vec![(1, 1), (2, 2), (4, 2), (3, 1)]), // (q heads, kv heads)
        1usize..7,                                                  // q_len
        0usize..5,                                                  // extra keys before the queries
        prop::sample::select(vec![1usize, 4, 8]),                   // head_dim
        any::<bool>(),                                              // causal
        prop::option::of(0.5f64..20.0),                             // softcap
        (prop::option::of(0usize..6), prop::option::of(0usize..6)), // window
        prop::option::of(prop::option::of(0.01f64..1.0)),           // scale
        any::<u64>(),
    )
        .prop_flat_map(
            |(batch, (qh, kh), q_len, extra, d, causal, softcap, (left, right), scale, seed)| {
                let k_len = q_len + extra;
                let padding = prop_oneof![
                    Just(None),
                    prop::collection::vec(0..=k_len, batch)
                        .prop_map(|l| Some(KeyPadding::Lengths(l))),
                    prop::collection::vec(any::<bool>(), batch * k_len)
                        .prop_map(move |keep| Some(KeyPadding::Mask { k_len, keep })),
                ];
                padding.prop_map(move |key_padding| {
                    let o = AttentionOptions {
                        scale: scale.flatten(),
                        causal,
                        softcap,
                        window: Window { left, right },
                        key_padding,
                    };
                    ([batch, qh, q_len, d], [batch, kh, k_len, d], o, seed)
                })
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn eager_equals_the_reference_and_sdpa_equals_eager((qs, ks, o, seed) in case()) {
        let (q, k, v) = (host(qs, seed), host(ks, seed ^ 1), host(ks, seed ^ 2));
        let want = reference(&q, &k, &v, &o);
        let eager = run(AttentionImpl::Eager, &q, &k, &v, &o);
        let diff = max_abs_diff(&eager, &want);
        prop_assert!(diff < 1e-5, "eager vs reference: {}", diff);
        let sdpa = run(AttentionImpl::Sdpa, &q, &k, &v, &o);
        let diff = max_abs_diff(&sdpa, &eager);
        prop_assert!(diff < 1e-5, "sdpa vs eager: {}", diff);
    }
}
