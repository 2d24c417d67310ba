//! Generates the CUDA C++ of the kernels without a GPU, as the CUDA runtime would before
//! handing it to NVRTC: catches expansion-time failures of the paths only CUDA takes (the
//! plane reduction, bf16, 16-byte vectors) on machines without CUDA.

use cubecl::Compiler;
use cubecl::cuda::{CudaCompiler, CudaRuntime};
use cubecl::prelude::*;
use cubecl_cpp::shared::{CompilationOptions, CppSupportedFeatures};
use half::{bf16, f16};

use super::gated::gated_kernel;
use super::norm::{NormConfig, rms_norm_kernel};
use super::rope::rope_kernel;
use super::rope_append::{Strides3, Strides3CompilationArg, rope_append_kernel};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Norm(NormConfig),
    Rope,
    RopeAppend,
    Gated { gelu: bool },
}

/// The CUDA source of one kernel for `F` with `16 / size_of::<F>()`-element vectors.
fn source<F: Float>(which: Which, units: u32) -> String {
    let arr = ArrayCompilationArg { inplace: None };
    let mut builder = KernelBuilder::default();
    builder.runtime_properties(CudaRuntime::target_properties());
    let settings = KernelSettings::default()
        .cube_dim(CubeDim::new_1d(units))
        .kernel_name("kiln_kernel");
    settings.address_type.register(&mut builder.scope);
    let dtype = F::as_type(&builder.scope).storage_type();
    let n = 16 / size_of::<F>();
    macro_rules! with_width {
        ($N:ty) => {{
            type V<F> = Vector<F, $N>;
            let input = |b: &mut KernelBuilder| <Array<V<F>> as LaunchArg>::expand(&arr, b);
            let output = |b: &mut KernelBuilder| <Array<V<F>> as LaunchArg>::expand_output(&arr, b);
            let scalar = |b: &mut KernelBuilder| <u32 as LaunchArg>::expand(&(), b);
            let float = |b: &mut KernelBuilder| <f32 as LaunchArg>::expand(&(), b);
            match which {
                Which::Norm(cfg) => {
                    let (x, r, w) = (
                        input(&mut builder),
                        input(&mut builder),
                        input(&mut builder),
                    );
                    let (o, s) = (output(&mut builder), output(&mut builder));
                    let [rows, vecs, xs, rs] = [(); 4].map(|_| scalar(&mut builder));
                    let (dim, eps) = (float(&mut builder), float(&mut builder));
                    rms_norm_kernel::expand::<F, $N>(
                        &mut builder.scope,
                        n,
                        x,
                        r,
                        w,
                        o,
                        s,
                        rows,
                        vecs,
                        xs,
                        rs,
                        dim,
                        eps,
                        cfg,
                        dtype,
                    );
                }
                Which::Rope => {
                    let (x, c, s) = (
                        input(&mut builder),
                        input(&mut builder),
                        input(&mut builder),
                    );
                    let o = output(&mut builder);
                    let [units, heads, seq, hv, xb, xh, xs, tb, ts] =
                        [(); 9].map(|_| scalar(&mut builder));
                    rope_kernel::expand::<F, $N>(
                        &mut builder.scope,
                        n,
                        x,
                        c,
                        s,
                        o,
                        units,
                        heads,
                        seq,
                        hv,
                        xb,
                        xh,
                        xs,
                        tb,
                        ts,
                        dtype,
                    );
                }
                Which::RopeAppend => {
                    let [q, k, v, c, s] = [(); 5].map(|_| input(&mut builder));
                    let [qo, kc, vc] = [(); 3].map(|_| output(&mut builder));
                    let arg = Strides3CompilationArg {
                        b: (),
                        h: (),
                        s: (),
                    };
                    let strides = |b: &mut KernelBuilder| <Strides3 as LaunchArg>::expand(&arg, b);
                    let [qs, ks, vs, cs] = [(); 4].map(|_| strides(&mut builder));
                    let [units, heads, kvh, seq, hv, start, tb, ts] =
                        [(); 8].map(|_| scalar(&mut builder));
                    rope_append_kernel::expand::<F, $N>(
                        &mut builder.scope,
                        n,
                        q,
                        k,
                        v,
                        c,
                        s,
                        qo,
                        kc,
                        vc,
                        qs,
                        ks,
                        vs,
                        cs,
                        units,
                        heads,
                        kvh,
                        seq,
                        hv,
                        start,
                        tb,
                        ts,
                        dtype,
                    );
                }
                Which::Gated { gelu } => {
                    let (g, u) = (input(&mut builder), input(&mut builder));
                    let o = output(&mut builder);
                    let [units, vecs, gs, us] = [(); 4].map(|_| scalar(&mut builder));
                    gated_kernel::expand::<F, $N>(
                        &mut builder.scope,
                        n,
                        g,
                        u,
                        o,
                        units,
                        vecs,
                        gs,
                        us,
                        gelu,
                        dtype,
                    );
                }
            }
        }};
    }
    match n {
        8 => with_width!(Const<8>),
        _ => with_width!(Const<4>),
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
    CudaCompiler::default()
        .compile(
            definition,
            &options,
            ExecutionMode::Unchecked,
            AddressType::U32.unsigned_type(),
        )
        .map(|repr| repr.to_string())
        .unwrap_or_else(|e| panic!("{which:?}: {e:?}"))
}

#[test]
fn cuda_sources_generate() {
    let mut kernels = vec![
        (Which::Rope, 256),
        (Which::RopeAppend, 256),
        (Which::Gated { gelu: false }, 256),
        (Which::Gated { gelu: true }, 256),
    ];
    for (units, plane) in [(256, 32), (32, 32), (128, 0)] {
        for residual in [false, true] {
            let cfg = NormConfig {
                units,
                plane,
                residual,
            };
            kernels.push((Which::Norm(cfg), units as u32));
        }
    }
    // `KILN_CUDA_SOURCES=DIR` writes them out, for NVRTC to compile without a GPU
    // (`scripts/nvrtc_check.py DIR`).
    let dump = std::env::var_os("KILN_CUDA_SOURCES").map(std::path::PathBuf::from);
    for (k, (which, units)) in kernels.into_iter().enumerate() {
        for (dtype, src) in [
            ("f32", source::<f32>(which, units)),
            ("f16", source::<f16>(which, units)),
            ("bf16", source::<bf16>(which, units)),
        ] {
            if let Some(dir) = &dump {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::write(dir.join(format!("models-{k}-{dtype}.cu")), &src).unwrap();
            }
            assert!(src.contains("kiln_kernel"), "{which:?}: {src}");
            if let Which::Norm(NormConfig { plane: 32, .. }) = which {
                assert!(
                    src.contains("__shfl"),
                    "{which:?}: no plane reduction in\n{src}"
                );
            }
        }
    }
}
