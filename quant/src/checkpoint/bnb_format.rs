//! The bitsandbytes tensor layout of an HF checkpoint, per quantized Linear.
//!
//! 4-bit, for a weight `P.weight`: `P.weight` (u8 `[(n+1)/2, 1]`), `P.weight.absmax` (f32, or u8
//! when nested), `P.weight.quant_map` (f32 `[16]`), `P.weight.nested_absmax`,
//! `P.weight.nested_quant_map` (f32 `[256]`) and `P.weight.quant_state.bitsandbytes__nf4|fp4`
//! (u8 bytes of the JSON `json.dumps` writes). 8-bit, for a module `P`: `P.weight` (i8
//! `[out, in]`), `P.SCB` (f32 `[out]`), `P.weight_format` (u8 scalar 0, row-major).

use safetensors::Dtype;

use super::safetensors_io::HfTensor;
use crate::codec::{
    Absmax, FourBitType, Int8Rowwise, NESTED_BLOCKSIZE, NestedAbsmax, Quantized4bit,
};
use crate::element::FloatDtype;
use crate::error::{QuantError, Result};

/// The non-tensor part of a 4-bit quant state, stored as JSON bytes next to the tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantStateJson {
    /// NF4 or FP4.
    pub quant_type: FourBitType,
    /// The 4-bit blocksize.
    pub blocksize: usize,
    /// The dtype of the tensor that was quantized.
    pub dtype: FloatDtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// `(nested_blocksize, nested_dtype, nested_offset)` when double-quantized.
    pub nested: Option<(usize, FloatDtype, f64)>,
}

impl QuantStateJson {
    /// The state of a quantized tensor.
    pub fn of(q: &Quantized4bit) -> Self {
        QuantStateJson {
            quant_type: q.quant_type(),
            blocksize: q.blocksize(),
            dtype: q.dtype(),
            shape: q.shape().to_vec(),
            nested: match q.absmax() {
                Absmax::Plain(_) => None,
                Absmax::Nested(n) => Some((NESTED_BLOCKSIZE, FloatDtype::F32, n.offset() as f64)),
            },
        }
    }

    /// The JSON exactly as bitsandbytes writes it (`json.dumps` of `QuantState.as_dict`).
    pub fn to_json(&self) -> String {
        let shape: Vec<String> = self.shape.iter().map(usize::to_string).collect();
        let mut s = format!(
            "{{\"quant_type\": \"{}\", \"blocksize\": {}, \"dtype\": \"{}\", \"shape\": [{}]",
            self.quant_type.name(),
            self.blocksize,
            self.dtype.torch_name(),
            shape.join(", ")
        );
        if let Some((bs, dtype, offset)) = self.nested {
            s.push_str(&format!(
                ", \"nested_blocksize\": {bs}, \"nested_dtype\": \"{}\", \"nested_offset\": {}",
                dtype.torch_name(),
                python_float_repr(offset)
            ));
        }
        s.push('}');
        s
    }

    /// Parses the JSON of the tensor `name` (any key order and spacing).
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| QuantError::BadQuantState {
            name: name.to_string(),
            reason,
        };
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let str_key = |k: &str| {
            v[k].as_str()
                .ok_or_else(|| bad(format!("`{k}` missing or not a string")))
        };
        let usize_key = |k: &str| {
            v[k].as_u64()
                .map(|x| x as usize)
                .ok_or_else(|| bad(format!("`{k}` missing or not an integer")))
        };
        let dtype_key = |k: &str| {
            let s = str_key(k)?;
            FloatDtype::from_torch_name(s)
                .ok_or_else(|| bad(format!("`{k}`: unsupported dtype `{s}`")))
        };
        let quant_type = str_key("quant_type")?;
        let quant_type = FourBitType::from_name(quant_type)
            .ok_or_else(|| bad(format!("unknown quant_type `{quant_type}`")))?;
        let shape = v["shape"]
            .as_array()
            .ok_or_else(|| bad("`shape` missing or not a list".into()))?
            .iter()
            .map(|d| {
                d.as_u64()
                    .map(|d| d as usize)
                    .ok_or_else(|| bad("`shape` holds a non-integer".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        let nested = if v.get("nested_offset").is_some() {
            let offset = v["nested_offset"]
                .as_f64()
                .ok_or_else(|| bad("`nested_offset` is not a number".into()))?;
            Some((
                usize_key("nested_blocksize")?,
                dtype_key("nested_dtype")?,
                offset,
            ))
        } else {
            None
        };
        Ok(QuantStateJson {
            quant_type,
            blocksize: usize_key("blocksize")?,
            dtype: dtype_key("dtype")?,
            shape,
            nested,
        })
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, fixed notation for decimal
/// exponents in [-4, 16), scientific (`1e-05`, `1.5e+16`) otherwise, and `.0` on integers.
pub fn python_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` prints the shortest round-trip digits: "d.ddde-x".
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if v < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let body = if exp >= 0 {
            let point = exp as usize + 1;
            if digits.len() <= point {
                format!("{digits}{}.0", "0".repeat(point - digits.len()))
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

/// A planned output tensor: name, dtype, shape.
pub type TensorPlan = (String, Dtype, Vec<usize>);

/// The name of the quant_state tensor of a 4-bit weight.
pub fn quant_state_key(weight_name: &str, quant_type: FourBitType) -> String {
    format!(
        "{weight_name}.quant_state.bitsandbytes__{}",
        quant_type.name()
    )
}

/// The tensors bitsandbytes saves for a 4-bit weight named `weight_name` (e.g.
/// `model.layers.0.mlp.up_proj.weight`).
pub fn four_bit_tensors(weight_name: &str, q: &Quantized4bit) -> Vec<(String, HfTensor)> {
    let w = weight_name;
    let mut out = vec![(
        w.to_string(),
        HfTensor::from_u8(vec![q.packed().len(), 1], q.packed().to_vec()),
    )];
    match q.absmax() {
        Absmax::Plain(a) => out.push((format!("{w}.absmax"), HfTensor::from_f32(vec![a.len()], a))),
        Absmax::Nested(n) => {
            out.push((
                format!("{w}.absmax"),
                HfTensor::from_u8(vec![n.codes().len()], n.codes().to_vec()),
            ));
            out.push((
                format!("{w}.nested_absmax"),
                HfTensor::from_f32(vec![n.absmax().len()], n.absmax()),
            ));
            out.push((
                format!("{w}.nested_quant_map"),
                HfTensor::from_f32(vec![n.code().len()], n.code()),
            ));
        }
    }
    out.push((
        format!("{w}.quant_map"),
        HfTensor::from_f32(vec![16], q.quant_type().code()),
    ));
    let json = QuantStateJson::of(q).to_json().into_bytes();
    out.push((
        quant_state_key(w, q.quant_type()),
        HfTensor::from_u8(vec![json.len()], json),
    ));
    out
}

/// The tensor names, dtypes and shapes [`four_bit_tensors`] will produce for a weight of
/// `shape` (without quantizing). The quant_state tensor is listed last with its maximum length
/// (its exact length depends on the offset of nested quantization).
pub fn four_bit_plan(
    weight_name: &str,
    shape: &[usize],
    dtype: FloatDtype,
    quant_type: FourBitType,
    blocksize: usize,
    nested: bool,
) -> (Vec<TensorPlan>, (String, usize)) {
    let w = weight_name;
    let n: usize = shape.iter().product();
    let blocks = n.div_ceil(blocksize);
    let mut fixed = vec![(w.to_string(), Dtype::U8, vec![n.div_ceil(2), 1])];
    if nested {
        fixed.push((format!("{w}.absmax"), Dtype::U8, vec![blocks]));
        fixed.push((
            format!("{w}.nested_absmax"),
            Dtype::F32,
            vec![blocks.div_ceil(NESTED_BLOCKSIZE)],
        ));
        fixed.push((format!("{w}.nested_quant_map"), Dtype::F32, vec![256]));
    } else {
        fixed.push((format!("{w}.absmax"), Dtype::F32, vec![blocks]));
    }
    fixed.push((format!("{w}.quant_map"), Dtype::F32, vec![16]));
    let state = QuantStateJson {
        quant_type,
        blocksize,
        dtype,
        shape: shape.to_vec(),
        nested: nested.then_some((NESTED_BLOCKSIZE, FloatDtype::F32, 0.0)),
    };
    // "0.0" stands in for the offset; Python's repr of an f32 value is at most 24 characters.
    let max = state.to_json().len() + if nested { 24 } else { 0 };
    (fixed, (quant_state_key(w, quant_type), max))
}

/// Reads a 4-bit weight from its checkpoint tensors; `get(name)` returns a tensor or `None`.
pub fn four_bit_from_tensors(
    weight_name: &str,
    mut get: impl FnMut(&str) -> Result<Option<HfTensor>>,
) -> Result<Quantized4bit> {
    let w = weight_name;
    let mut require = |name: String| -> Result<HfTensor> {
        get(&name)?.ok_or(QuantError::MissingTensor { name, file: None })
    };
    let (state_name, state) = {
        let mut found = None;
        for qt in [FourBitType::Nf4, FourBitType::Fp4] {
            let key = quant_state_key(w, qt);
            if let Ok(t) = require(key.clone()) {
                found = Some((key, t));
                break;
            }
        }
        found.ok_or_else(|| QuantError::MissingTensor {
            name: format!("{w}.quant_state.bitsandbytes__nf4|fp4"),
            file: None,
        })?
    };
    let state = QuantStateJson::parse(&state_name, &state.to_u8(&state_name)?)?;
    let quant_map_name = format!("{w}.quant_map");
    let quant_map = require(quant_map_name.clone())?.to_f32_vec(&quant_map_name)?;
    let builtin = state.quant_type.code();
    if quant_map.len() != 16
        || quant_map
            .iter()
            .zip(builtin)
            .any(|(a, b)| a.to_bits() != b.to_bits())
    {
        return Err(QuantError::bad_tensor(
            quant_map_name,
            format!("not bitsandbytes' {} code table", state.quant_type),
        ));
    }
    let packed = require(w.to_string())?.to_u8(w)?;
    let absmax_name = format!("{w}.absmax");
    let absmax_t = require(absmax_name.clone())?;
    let absmax = match state.nested {
        None => Absmax::Plain(absmax_t.to_vec::<f32>(&absmax_name)?),
        Some((bs, dtype, offset)) => {
            if bs != NESTED_BLOCKSIZE || dtype != FloatDtype::F32 {
                return Err(QuantError::BadQuantState {
                    name: state_name,
                    reason: format!(
                        "nested blocksize {bs} / dtype {dtype} unsupported (256 / float32 expected)"
                    ),
                });
            }
            let na = format!("{w}.nested_absmax");
            let nq = format!("{w}.nested_quant_map");
            let nested_absmax = require(na.clone())?.to_vec::<f32>(&na)?;
            let nested_map = require(nq.clone())?.to_vec::<f32>(&nq)?;
            // bnb stores the offset as a Python float of an f32 value.
            Absmax::Nested(NestedAbsmax::from_parts(
                absmax_t.to_u8(&absmax_name)?,
                nested_absmax,
                offset as f32,
                nested_map,
            )?)
        }
    };
    Quantized4bit::from_parts(
        state.quant_type,
        state.blocksize,
        state.dtype,
        state.shape,
        packed,
        absmax,
    )
}

/// The tensors bitsandbytes saves for an 8-bit Linear whose module path is `module`.
pub fn int8_tensors(module: &str, q: &Int8Rowwise) -> Vec<(String, HfTensor)> {
    vec![
        (
            format!("{module}.weight"),
            HfTensor::from_i8(vec![q.rows(), q.cols()], q.data()),
        ),
        (
            format!("{module}.SCB"),
            HfTensor::from_f32(vec![q.rows()], q.scales()),
        ),
        (
            format!("{module}.weight_format"),
            HfTensor::from_u8(vec![], vec![0]),
        ),
    ]
}

/// The tensor names, dtypes and shapes [`int8_tensors`] produces for a `[out, in]` weight.
pub fn int8_plan(module: &str, out: usize, inp: usize) -> Vec<TensorPlan> {
    vec![
        (format!("{module}.weight"), Dtype::I8, vec![out, inp]),
        (format!("{module}.SCB"), Dtype::F32, vec![out]),
        (format!("{module}.weight_format"), Dtype::U8, vec![]),
    ]
}

/// Reads an 8-bit Linear weight (`weight` int8 + `SCB`; `weight_format` must be row-major if
/// present).
pub fn int8_from_tensors(
    module: &str,
    mut get: impl FnMut(&str) -> Result<Option<HfTensor>>,
) -> Result<Int8Rowwise> {
    let wn = format!("{module}.weight");
    let sn = format!("{module}.SCB");
    let fmt = format!("{module}.weight_format");
    let w = get(&wn)?.ok_or_else(|| QuantError::MissingTensor {
        name: wn.clone(),
        file: None,
    })?;
    let scb = get(&sn)?.ok_or_else(|| QuantError::MissingTensor {
        name: sn.clone(),
        file: None,
    })?;
    if let Some(f) = get(&fmt)? {
        let v = f.to_u8(&fmt)?;
        if v.first().copied().unwrap_or(0) != 0 {
            return Err(QuantError::bad_tensor(
                fmt,
                format!("weight format {v:?}: only 0 (row) is supported"),
            ));
        }
    }
    if w.shape.len() != 2 {
        return Err(QuantError::bad_tensor(
            wn,
            format!("expected a 2-D int8 weight, shape {:?}", w.shape),
        ));
    }
    let (rows, cols) = (w.shape[0], w.shape[1]);
    Int8Rowwise::from_parts(w.to_i8(&wn)?, scb.to_vec::<f32>(&sn)?, rows, cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_repr_rules() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (2.5, "2.5"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (123.456, "123.456"),
            (-2.4619410037994385, "-2.4619410037994385"),
            (3.4028234663852886e38, "3.4028234663852886e+38"),
        ];
        for (v, want) in cases {
            assert_eq!(python_float_repr(v), want, "{v}");
        }
    }

    #[test]
    fn quant_state_round_trips() {
        let s = QuantStateJson {
            quant_type: FourBitType::Fp4,
            blocksize: 128,
            dtype: FloatDtype::BF16,
            shape: vec![3, 5],
            nested: Some((256, FloatDtype::F32, 0.25)),
        };
        let json = s.to_json();
        assert_eq!(
            json,
            "{\"quant_type\": \"fp4\", \"blocksize\": 128, \"dtype\": \"bfloat16\", \"shape\": [3, 5], \
             \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 0.25}"
        );
        assert_eq!(
            QuantStateJson::parse("t", json.as_bytes()).expect("parse"),
            s
        );
        let err = QuantStateJson::parse("t", b"{\"quant_type\": \"int4\"}").expect_err("bad type");
        assert!(err.to_string().contains("int4"), "{err}");
    }
}
