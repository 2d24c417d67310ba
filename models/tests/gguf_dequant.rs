//! Dequantization against gguf-py (`scripts/reference/gguf_dequant.py`) and the Q/K
//! unpermutation against transformers (`scripts/reference/gguf_transformers.py`).

mod gguf_util;

use gguf_util::*;
use kiln_models::gguf::{GgmlType, Gguf, GgufError, dequantize_into, unpermute_qk};

fn manifest_cases(kind: &str) -> Vec<serde_json::Value> {
    let m = json("dequant/manifest.json");
    m["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c["kind"] == kind)
        .cloned()
        .collect()
}

fn ty_of(case: &serde_json::Value) -> GgmlType {
    GgmlType::from_name(case["type"].as_str().expect("type")).expect("known type")
}

#[test]
fn synthetic_blocks_match_gguf_py_bit_for_bit() {
    let cases = manifest_cases("synthetic");
    assert!(
        cases.len() >= 20,
        "manifest lists {} synthetic cases",
        cases.len()
    );
    let mut types = std::collections::HashSet::new();
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let ty = ty_of(case);
        types.insert(ty);
        let bytes = std::fs::read(fixture(&format!(
            "dequant/{}",
            case["bytes"].as_str().expect("bytes")
        )))
        .expect("bytes fixture");
        let want = f32s(&format!(
            "dequant/{}",
            case["expected"].as_str().expect("expected")
        ));
        let n = case["n_rows"].as_u64().expect("n_rows") as usize
            * case["row_len"].as_u64().expect("row_len") as usize;
        let mut got = vec![0f32; n];
        dequantize_into(ty, &bytes, &mut got).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_bits_eq(&got, &want, name);
    }
    for ty in GgmlType::DEQUANTIZABLE {
        if *ty != GgmlType::F32 {
            assert!(types.contains(ty), "no synthetic fixture for {ty}");
        }
    }
}

#[test]
fn large_inputs_take_the_parallel_path_with_the_same_result() {
    // 8 copies of a fixture exceed the serial threshold; each copy must decode identically.
    let case = manifest_cases("synthetic")
        .into_iter()
        .find(|c| c["name"] == "syn_random_q4_k")
        .expect("q4_k case");
    let bytes = std::fs::read(fixture(&format!(
        "dequant/{}",
        case["bytes"].as_str().expect("bytes")
    )))
    .expect("bytes");
    let want = f32s(&format!(
        "dequant/{}",
        case["expected"].as_str().expect("expected")
    ));
    let copies = 64;
    let big: Vec<u8> = bytes
        .iter()
        .copied()
        .cycle()
        .take(bytes.len() * copies)
        .collect();
    let mut got = vec![0f32; want.len() * copies];
    dequantize_into(GgmlType::Q4_K, &big, &mut got).expect("dequantize");
    for chunk in got.chunks_exact(want.len()) {
        assert_bits_eq(chunk, &want, "parallel q4_k copy");
    }
}

#[test]
fn dequantize_into_rejects_wrong_lengths_and_types() {
    let mut out = [0f32; 32];
    let err = dequantize_into(GgmlType::Q8_0, &[0u8; 33], &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            GgufError::Dequantize {
                ty: GgmlType::Q8_0,
                ..
            }
        ),
        "{err}"
    );
    let mut odd = [0f32; 31];
    assert!(dequantize_into(GgmlType::Q8_0, &[0u8; 34], &mut odd).is_err());
    let err = dequantize_into(GgmlType::IQ2_XXS, &[0u8; 66], &mut [0f32; 256]).unwrap_err();
    assert!(err.to_string().contains("IQ2_XXS"), "{err}");
}

#[test]
fn real_tensors_match_gguf_py_bit_for_bit() {
    let cases = manifest_cases("real");
    assert!(cases.len() >= 8);
    let mut open: Vec<(String, Gguf)> = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let art = case["artifact"].as_str().expect("artifact").to_owned();
        if !open.iter().any(|(a, _)| *a == art) {
            open.push((art.clone(), Gguf::open(artifact(&art)).expect("open")));
        }
        let g = &open.iter().find(|(a, _)| *a == art).expect("opened").1;
        let tensor = case["tensor"].as_str().expect("tensor");
        let info = g.tensor(tensor).expect("tensor");
        assert_eq!(info.ty(), ty_of(case), "{name}: type");
        let dims: Vec<u64> = case["dims"]
            .as_array()
            .expect("dims")
            .iter()
            .map(|d| d.as_u64().expect("dim"))
            .collect();
        assert_eq!(info.dims(), dims.as_slice(), "{name}: dims");
        let want = f32s(&format!(
            "dequant/{}",
            case["expected"].as_str().expect("expected")
        ));
        let row_len = info.row_len();
        let mut got = Vec::new();
        for r in case["rows"].as_array().expect("rows") {
            let r = r.as_u64().expect("row") as usize;
            got.extend(g.dequantize_rows(tensor, r..r + 1).expect("rows"));
        }
        assert_eq!(got.len(), want.len(), "{name}");
        assert_bits_eq(&got, &want, name);
        // The whole tensor, all rows, through the streaming path in slabs. (The 168M-value
        // Gemma embedding is covered whole by `every_hf_parameter_matches_transformers`.)
        if info.n_elements() > 1 << 24 {
            continue;
        }
        let mut all = Vec::with_capacity(info.n_elements() as usize);
        let slab = 4096;
        for start in (0..info.n_rows()).step_by(slab) {
            all.extend(
                g.dequantize_rows(tensor, start..(start + slab).min(info.n_rows()))
                    .expect("slab"),
            );
        }
        assert_eq!(all.len(), info.n_rows() * row_len);
        assert_eq!(
            sha256_f32(&all),
            case["sha256_all_rows"].as_str().expect("sha"),
            "{name}: whole tensor"
        );
    }
}

#[test]
fn whole_tensor_equals_concatenated_rows() {
    let g = Gguf::open(artifact(SMOLLM2)).expect("open");
    let name = "blk.3.ffn_up.weight";
    let whole = g.dequantize(name).expect("whole");
    let t = g.tensor(name).expect("info");
    assert_eq!(t.shape(), vec![1536, 576]);
    assert_eq!(whole.len(), 1536 * 576);
    let rows = g.dequantize_rows(name, 100..103).expect("rows");
    assert_bits_eq(&rows, &whole[100 * 576..103 * 576], "rows 100..103");
    let mut out = vec![0f32; 2 * 576];
    g.dequantize_rows_into(name, 0..2, &mut out).expect("into");
    assert_bits_eq(&out, &whole[..2 * 576], "rows 0..2");
    assert!(g.dequantize_rows(name, 1535..1537).is_err());
    assert!(g.dequantize_rows_into(name, 0..2, &mut [0f32; 5]).is_err());
}

#[test]
fn unpermuted_q_and_k_match_transformers() {
    let m = json("transformers/manifest.json");
    for w in m["weights"].as_array().expect("weights") {
        let name = w["name"].as_str().expect("name");
        let g = Gguf::open(artifact(w["artifact"].as_str().expect("artifact"))).expect("open");
        let hints = g.hints().expect("hints");
        let t = g
            .tensor(w["gguf_tensor"].as_str().expect("tensor"))
            .expect("tensor");
        let shape: Vec<usize> = w["shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|d| d.as_u64().expect("dim") as usize)
            .collect();
        assert_eq!(t.shape(), shape, "{name}");
        let values = g.dequantize(t.name()).expect("dequantize");
        // llama.cpp permutes llama's Q/K, not Gemma's.
        let hf = if hints.architecture == "llama" {
            let heads = if name.ends_with("q_proj") {
                hints.num_attention_heads
            } else {
                hints.num_key_value_heads
            };
            assert_eq!(
                heads as u64,
                w["n_head"].as_u64().expect("n_head"),
                "{name}: heads"
            );
            unpermute_qk(&values, shape[0], heads).expect("unpermute")
        } else {
            values
        };
        assert_eq!(
            sha256_f32(&hf),
            w["sha256_all"].as_str().expect("sha"),
            "{name}: whole matrix"
        );
        let want = f32s(&format!(
            "transformers/{}",
            w["expected"].as_str().expect("expected")
        ));
        let cols = shape[1];
        let mut got = Vec::new();
        for r in w["rows"].as_array().expect("rows") {
            let r = r.as_u64().expect("row") as usize;
            got.extend_from_slice(&hf[r * cols..(r + 1) * cols]);
        }
        assert_bits_eq(&got, &want, name);
    }
}

#[test]
fn unpermute_rejects_shapes_that_do_not_split_into_heads() {
    assert!(unpermute_qk(&[0f32; 12], 6, 4).is_err());
    assert!(unpermute_qk(&[0f32; 12], 4, 0).is_err());
    assert!(unpermute_qk(&[0f32; 13], 4, 1).is_err());
    // Two heads of dim 4, two columns.
    let m: Vec<u32> = (0..16).collect();
    let out = unpermute_qk(&m, 8, 2).expect("ok");
    // head 0 rows [r0, r1, r2, r3] -> [r0, r2, r1, r3]
    assert_eq!(&out[..8], &[0, 1, 4, 5, 2, 3, 6, 7]);
    assert_eq!(&out[8..], &[8, 9, 12, 13, 10, 11, 14, 15]);
}

#[test]
fn every_hf_parameter_matches_transformers() {
    let m = json("transformers/manifest.json");
    for (label, rel) in [("smollm2", SMOLLM2), ("gemma3", GEMMA3)] {
        let g = Gguf::open(artifact(rel)).expect("open");
        let want = m["state_dict_sha256"][label].as_object().expect("digests");
        let mut names: Vec<&String> = want.keys().collect();
        names.sort();
        let ours = g.hf_tensor_names().expect("names");
        assert_eq!(
            ours.iter().collect::<Vec<_>>(),
            names,
            "{label}: parameter names"
        );
        // A tied lm_head is the embedding again: hash each source tensor once.
        let mut done: std::collections::HashMap<kiln_models::gguf::HfSource, (Vec<usize>, String)> =
            Default::default();
        for (name, w) in want {
            let src = g.hf_source(name).expect("source");
            let (shape, sha) = done
                .entry(src)
                .or_insert_with(|| {
                    let (shape, values) = g
                        .hf_tensor(name)
                        .unwrap_or_else(|e| panic!("{label} {name}: {e}"));
                    (shape, sha256_f32(&values))
                })
                .clone();
            let wshape: Vec<usize> = w["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            assert_eq!(shape, wshape, "{label} {name}: shape");
            assert_eq!(
                sha,
                w["sha256"].as_str().expect("sha"),
                "{label} {name}: values"
            );
        }
    }
}
