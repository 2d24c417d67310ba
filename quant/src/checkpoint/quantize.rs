//! Quantizing an HF safetensors model directory into a bitsandbytes checkpoint, streaming.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::Dtype;
use serde_json::{Map, Value};

use super::bnb_format::{four_bit_plan, four_bit_tensors, int8_plan, int8_tensors};
use super::read_json;
use super::safetensors_io::{HfTensor, INDEX_FILE, ModelFiles, SafetensorsWriter};
use crate::codec::{Element, Int8Rowwise, Quantized4bit};
use crate::config::{QuantBits, QuantConfig};
use crate::element::FloatDtype;
use crate::error::{QuantError, Result};

/// What happened to one input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorAction {
    /// Quantized to 4 or 8 bits.
    Quantized,
    /// Copied unchanged.
    Copied,
}

/// Reported after each input tensor is written.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// 1-based position among all input tensors.
    pub index: usize,
    /// Number of input tensors.
    pub total: usize,
    /// The input tensor's name.
    pub name: &'a str,
    /// Quantized or copied.
    pub action: TensorAction,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written (all output tensors of this input).
    pub bytes_out: u64,
}

/// Totals of a [`quantize_checkpoint`] run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Weights quantized.
    pub tensors_quantized: usize,
    /// Tensors copied unchanged.
    pub tensors_copied: usize,
    /// Parameters in the quantized weights.
    pub params_quantized: u64,
    /// Tensor bytes read.
    pub bytes_before: u64,
    /// Tensor bytes written.
    pub bytes_after: u64,
    /// Bytes of the weights that were quantized, before.
    pub quantized_bytes_before: u64,
    /// Bytes of their quantized form (codes, absmax, nested state, code tables, JSON).
    pub quantized_bytes_after: u64,
    /// The safetensors files written.
    pub files: Vec<PathBuf>,
}

impl Summary {
    /// Bits per parameter of the quantized weights, everything stored for them included.
    pub fn bits_per_param(&self) -> f64 {
        if self.params_quantized == 0 {
            0.0
        } else {
            self.quantized_bytes_after as f64 * 8.0 / self.params_quantized as f64
        }
    }
}

/// Whether the tensor `name` is quantized under `config`: a 2-D float `*.weight` that is not
/// `lm_head`, not an embedding (`*embed*`, `wte`, `wpe`) and not in `skip_modules`.
/// (transformers decides by module type; from tensors alone kiln decides by name and shape.)
pub fn is_quantizable(name: &str, shape: &[usize], dtype: Dtype, config: &QuantConfig) -> bool {
    let Some(module) = name.strip_suffix(".weight") else {
        return false;
    };
    shape.len() == 2
        && shape.iter().all(|&d| d > 0)
        && FloatDtype::from_safetensors(dtype).is_some()
        && !module
            .split('.')
            .any(|c| c == "lm_head" || c.contains("embed") || c == "wte" || c == "wpe")
        && !config.skips(module)
}

/// Files that hold weights in other formats: not copied to the output.
fn is_weight_file(name: &str) -> bool {
    let exts = [
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".ckpt",
        ".h5",
        ".msgpack",
        ".gguf",
        ".onnx",
    ];
    name == INDEX_FILE || name == "config.json" || exts.iter().any(|e| name.ends_with(e))
}

enum Plan {
    Copy,
    Quantize,
}

/// Quantizes every Linear weight of the HF model in `in_dir` (single `model.safetensors` or
/// sharded with `model.safetensors.index.json`) except `lm_head`, embeddings and
/// `config.skip_modules`, and writes a checkpoint that transformers + bitsandbytes load:
/// safetensors shards named as the input's, the index when sharded, `config.json` with
/// `quantization_config`, and the directory's other files (tokenizer, generation config).
///
/// Tensors are read, quantized and written one at a time: peak memory is about one tensor.
/// `progress` is called after each input tensor.
pub fn quantize_checkpoint(
    in_dir: impl AsRef<Path>,
    out_dir: impl AsRef<Path>,
    config: &QuantConfig,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Summary> {
    let (in_dir, out_dir) = (in_dir.as_ref(), out_dir.as_ref());
    config.validate()?;
    let config_path = in_dir.join("config.json");
    let mut model_config = read_json(&config_path)?;
    if model_config
        .get("quantization_config")
        .is_some_and(|v| !v.is_null())
    {
        return Err(QuantError::InvalidConfig(format!(
            "{} already has a quantization_config: the model is quantized",
            config_path.display()
        )));
    }
    let same_dir = match (in_dir.canonicalize(), out_dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same_dir {
        return Err(QuantError::InvalidConfig(
            "the output directory is the input directory".into(),
        ));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| QuantError::io(out_dir, e))?;

    let mut files = ModelFiles::open(in_dir)?;
    let total: usize = files.files().iter().map(|f| f.names().len()).sum();
    let mut summary = Summary::default();
    let mut weight_map = Map::new();
    let mut index = 0usize;

    for fi in 0..files.files().len() {
        let file_name = files.files()[fi]
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let names = files.files()[fi].names();
        // Lay out the output file before reading any data.
        let mut plans = Vec::with_capacity(names.len());
        let (mut fixed, mut deferred) = (Vec::new(), Vec::new());
        for name in &names {
            let info = files.files()[fi]
                .info(name)
                .ok_or_else(|| QuantError::MissingTensor {
                    name: name.clone(),
                    file: None,
                })?;
            let (dtype, shape) = (info.dtype, info.shape.clone());
            if is_quantizable(name, &shape, dtype, config) {
                let fdtype = FloatDtype::from_safetensors(dtype).unwrap_or(FloatDtype::F32);
                let outputs: Vec<String> = match config.bits {
                    QuantBits::Four => {
                        let (f, (state, max)) = four_bit_plan(
                            name,
                            &shape,
                            fdtype,
                            config.quant_type,
                            config.blocksize,
                            config.double_quant,
                        );
                        let mut outs: Vec<String> = f.iter().map(|t| t.0.clone()).collect();
                        fixed.extend(f);
                        outs.push(state.clone());
                        deferred.push((state, Dtype::U8, max));
                        outs
                    }
                    QuantBits::Eight => {
                        let module = name.trim_end_matches(".weight");
                        let p = int8_plan(module, shape[0], shape[1]);
                        let outs = p.iter().map(|t| t.0.clone()).collect();
                        fixed.extend(p);
                        outs
                    }
                };
                for o in outputs {
                    weight_map.insert(o, Value::String(file_name.clone()));
                }
                plans.push(Plan::Quantize);
            } else {
                fixed.push((name.clone(), dtype, shape));
                weight_map.insert(name.clone(), Value::String(file_name.clone()));
                plans.push(Plan::Copy);
            }
        }
        let out_path = out_dir.join(&file_name);
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        let mut writer = SafetensorsWriter::create(&out_path, fixed, deferred, Some(meta))?;

        for (name, plan) in names.iter().zip(plans) {
            let tensor = files.file_mut(fi).read(name)?;
            let bytes_in = tensor.data.len() as u64;
            let (action, outputs) = match plan {
                Plan::Copy => (TensorAction::Copied, vec![(name.clone(), tensor)]),
                Plan::Quantize => (
                    TensorAction::Quantized,
                    quantize_tensor(name, &tensor, config)?,
                ),
            };
            let bytes_out: u64 = outputs.iter().map(|(_, t)| t.data.len() as u64).sum();
            for (out_name, t) in &outputs {
                writer.write(out_name, t)?;
            }
            drop(outputs);
            summary.bytes_before += bytes_in;
            summary.bytes_after += bytes_out;
            match action {
                TensorAction::Quantized => {
                    summary.tensors_quantized += 1;
                    summary.quantized_bytes_before += bytes_in;
                    summary.quantized_bytes_after += bytes_out;
                    if let Some(info) = files.files()[fi].info(name) {
                        summary.params_quantized += info.shape.iter().product::<usize>() as u64;
                    }
                }
                TensorAction::Copied => summary.tensors_copied += 1,
            }
            index += 1;
            progress(Progress {
                index,
                total,
                name,
                action,
                bytes_in,
                bytes_out,
            });
        }
        writer.finish()?;
        summary.files.push(out_path);
    }

    if files.is_sharded() {
        let index_json = serde_json::json!({
            "metadata": { "total_size": summary.bytes_after },
            "weight_map": weight_map,
        });
        write_json(&out_dir.join(INDEX_FILE), &index_json)?;
    }

    let has_lm_head = files.contains("lm_head.weight");
    let mut qcfg = config.clone();
    if let Some(skips) = &mut qcfg.skip_modules {
        // An explicit list replaces transformers' default skips: keep lm_head out of it too.
        if has_lm_head && !skips.iter().any(|s| s == "lm_head") {
            skips.push("lm_head".into());
        }
    }
    let qjson =
        serde_json::to_value(&qcfg).map_err(|e| QuantError::InvalidConfig(e.to_string()))?;
    if let Value::Object(map) = &mut model_config {
        let sorted = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a <= b);
        map.insert("quantization_config".into(), qjson);
        if sorted {
            map.sort_keys();
        }
    } else {
        return Err(QuantError::Json {
            path: config_path,
            reason: "not a JSON object".into(),
        });
    }
    write_json(&out_dir.join("config.json"), &model_config)?;
    copy_side_files(in_dir, out_dir)?;
    Ok(summary)
}

fn quantize_tensor(
    name: &str,
    tensor: &HfTensor,
    config: &QuantConfig,
) -> Result<Vec<(String, HfTensor)>> {
    fn typed<T: Element>(
        name: &str,
        tensor: &HfTensor,
        config: &QuantConfig,
    ) -> Result<Vec<(String, HfTensor)>> {
        let data: Vec<T> = tensor.to_vec(name)?;
        let shape = &tensor.shape;
        let named = |e: QuantError| match e {
            QuantError::NonFinite { index, value, .. } => QuantError::NonFinite {
                what: name.to_string(),
                index,
                value,
            },
            other => other,
        };
        Ok(match config.bits {
            QuantBits::Four => {
                let q = Quantized4bit::quantize(
                    &data,
                    shape,
                    config.quant_type,
                    config.blocksize,
                    config.double_quant,
                )
                .map_err(named)?;
                four_bit_tensors(name, &q)
            }
            QuantBits::Eight => {
                let q = Int8Rowwise::quantize_weight(&data, shape[0], shape[1]).map_err(named)?;
                int8_tensors(name.trim_end_matches(".weight"), &q)
            }
        })
    }
    match tensor.float_dtype(name)? {
        FloatDtype::F32 => typed::<f32>(name, tensor, config),
        FloatDtype::F16 => typed::<f16>(name, tensor, config),
        FloatDtype::BF16 => typed::<bf16>(name, tensor, config),
    }
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| QuantError::Json {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| QuantError::io(path, e))
}

fn copy_side_files(in_dir: &Path, out_dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(in_dir).map_err(|e| QuantError::io(in_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| QuantError::io(in_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && !is_weight_file(&name) {
            let to = out_dir.join(&name);
            std::fs::copy(entry.path(), &to).map_err(|e| QuantError::io(&to, e))?;
        }
    }
    Ok(())
}
