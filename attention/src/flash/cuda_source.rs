//! Generates the CUDA C++ of the flash kernels without a GPU, as the CUDA runtime would before
//! handing it to NVRTC. Catches expansion-time failures of the tensor-core kernel on machines
//! without CUDA; with `KILN_CUDA_SOURCES=<dir>` it also writes the sources there (to be
//! compiled with NVRTC by hand).

use cubecl::Compiler;
use cubecl::cuda::{CudaCompiler, CudaRuntime};
use cubecl::prelude::*;
use cubecl_cpp::shared::{CompilationOptions, CppSupportedFeatures};
use half::{bf16, f16};

use super::kernels::common::{FlashConfig, FlashLayout, FlashLayoutCompilationArg};
use super::kernels::{combine, mma, plain};

fn layout_arg() -> FlashLayoutCompilationArg {
    FlashLayoutCompilationArg {
        q_stride_t: (),
        q_stride_h: (),
        k_stride_t: (),
        k_stride_h: (),
        v_stride_t: (),
        v_stride_h: (),
        o_stride_t: (),
        o_stride_h: (),
        group: (),
        kv_heads: (),
        rows_cap: (),
        splits: (),
        window_left: (),
        window_right: (),
        scale: (),
        softcap: (),
        head_vecs: (),
        tile_keys: (),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    TensorCore,
    Portable,
    Combine,
}

/// The CUDA source of one kernel for `F` with 8-element (16-byte) vectors.
fn source<F: Float>(which: Which, cfg: FlashConfig, units: u32) -> String {
    let arr = ArrayCompilationArg { inplace: None };
    let mut builder = KernelBuilder::default();
    builder.runtime_properties(CudaRuntime::target_properties());
    let settings = KernelSettings::default()
        .cube_dim(CubeDim::new_1d(units))
        .kernel_name("flash_kernel");
    settings.address_type.register(&mut builder.scope);
    let dtype = F::as_type(&builder.scope).storage_type();
    type V<F> = Vector<F, Const<8>>;
    match which {
        Which::TensorCore | Which::Portable => {
            let q = <Array<V<F>> as LaunchArg>::expand(&arr, &mut builder);
            let k = <Array<V<F>> as LaunchArg>::expand(&arr, &mut builder);
            let v = <Array<V<F>> as LaunchArg>::expand(&arr, &mut builder);
            let out = <Array<V<F>> as LaunchArg>::expand_output(&arr, &mut builder);
            let po = <Array<f32> as LaunchArg>::expand_output(&arr, &mut builder);
            let pl = <Array<f32> as LaunchArg>::expand_output(&arr, &mut builder);
            let seqs = <Array<u32> as LaunchArg>::expand(&arr, &mut builder);
            let layout = <FlashLayout as LaunchArg>::expand(&layout_arg(), &mut builder);
            let scope = &mut builder.scope;
            if which == Which::TensorCore {
                mma::flash_mma::expand::<F, Const<8>>(
                    scope, 8, q, k, v, out, po, pl, seqs, layout, cfg, dtype,
                );
            } else {
                plain::flash_plain::expand::<F, Const<8>>(
                    scope, 8, q, k, v, out, po, pl, seqs, layout, cfg, dtype,
                );
            }
        }
        Which::Combine => {
            let po = <Array<f32> as LaunchArg>::expand(&arr, &mut builder);
            let pl = <Array<f32> as LaunchArg>::expand(&arr, &mut builder);
            let seqs = <Array<u32> as LaunchArg>::expand(&arr, &mut builder);
            let out = <Array<V<F>> as LaunchArg>::expand_output(&arr, &mut builder);
            let layout = <FlashLayout as LaunchArg>::expand(&layout_arg(), &mut builder);
            combine::flash_combine::expand::<F, Const<8>>(
                &mut builder.scope,
                8,
                po,
                pl,
                seqs,
                out,
                layout,
                cfg,
                dtype,
            );
        }
    }
    let definition = builder.build(settings);
    let options = CompilationOptions {
        warp_size: 32,
        supports_features: CppSupportedFeatures {
            grid_constants: true,
            clusters: true,
            fast_math: true,
            fast_tanh: true,
            elect_sync: true,
        },
    };
    let mut compiler = CudaCompiler::default();
    compiler
        .compile(
            definition,
            &options,
            ExecutionMode::Unchecked,
            AddressType::U32.unsigned_type(),
        )
        .map(|repr| repr.to_string())
        .unwrap_or_else(|e| panic!("{which:?} {cfg:?}: {e:?}"))
}

fn configs() -> Vec<(String, Which, FlashConfig, u32)> {
    let mut out = Vec::new();
    for d in [64, 128, 256] {
        for (planes, split, pipelined) in
            [(4usize, false, false), (2, true, false), (4, false, true)]
        {
            for (causal, window, softcap) in [(false, false, false), (true, true, true)] {
                let cfg = FlashConfig {
                    head_dim: d,
                    vec: 8,
                    block_q: 16 * planes,
                    block_k: match (planes, d) {
                        (4, 64 | 128) => 64,
                        (4, _) => 32,
                        (_, 64) => 64,
                        (_, 128) => 32,
                        _ => 16,
                    },
                    causal,
                    window,
                    softcap,
                    split,
                    emulate: false,
                    pipelined,
                };
                let name = format!(
                    "mma_d{d}_q{}_k{}_{}{}{}{}{}",
                    cfg.block_q,
                    cfg.block_k,
                    if causal { "c" } else { "" },
                    if window { "w" } else { "" },
                    if softcap { "s" } else { "" },
                    if split { "_split" } else { "" },
                    if pipelined { "_pipe" } else { "" }
                );
                out.push((name, Which::TensorCore, cfg, 32 * planes as u32));
            }
        }
    }
    let base = FlashConfig {
        head_dim: 128,
        vec: 8,
        block_q: 32,
        block_k: 16,
        causal: true,
        window: true,
        softcap: true,
        split: true,
        emulate: false,
        pipelined: false,
    };
    out.push(("plain_d128".into(), Which::Portable, base, 32));
    out.push(("combine_d128".into(), Which::Combine, base, 256));
    out
}

#[test]
fn cuda_sources_generate_for_every_configuration() {
    let dir = std::env::var_os("KILN_CUDA_SOURCES").map(std::path::PathBuf::from);
    for (name, which, cfg, units) in configs() {
        for (dtype, src) in [
            ("f16", source::<f16>(which, cfg, units)),
            ("bf16", source::<bf16>(which, cfg, units)),
        ] {
            if which == Which::TensorCore {
                assert!(src.contains("mma.sync.aligned.m16n8k16"), "{name}");
                assert!(src.contains("ldmatrix.sync.aligned"), "{name}");
            }
            if let Some(dir) = &dir {
                std::fs::create_dir_all(dir).expect("create the source directory");
                std::fs::write(dir.join(format!("attention-{name}_{dtype}.cu")), &src)
                    .expect("write a kernel source");
            }
        }
    }
}
