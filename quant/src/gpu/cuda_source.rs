//! Generates the CUDA C++ of the on-device quantization kernels without a GPU, as the CUDA
//! runtime would before handing it to NVRTC: catches expansion-time failures of the paths only
//! CUDA takes (f16/bf16 inputs, 16-byte vectors). `KILN_CUDA_SOURCES=DIR` writes them out for
//! NVRTC (`scripts/nvrtc_check.py DIR`).

use cubecl::Compiler;
use cubecl::cuda::{CudaCompiler, CudaRuntime};
use cubecl::prelude::*;
use cubecl_cpp::shared::{CompilationOptions, CppSupportedFeatures};
use half::{bf16, f16};

use super::quantize::{QUANT8_UNITS, quant4_kernel, quant8_kernel};

#[derive(Clone, Copy, Debug)]
enum Which {
    Quant4,
    Quant8,
}

fn source<F: Float>(which: Which) -> String {
    let arr = ArrayCompilationArg { inplace: None };
    let mut builder = KernelBuilder::default();
    builder.runtime_properties(CudaRuntime::target_properties());
    let units = match which {
        Which::Quant4 => 256,
        Which::Quant8 => QUANT8_UNITS as u32,
    };
    let settings = KernelSettings::default()
        .cube_dim(CubeDim::new_1d(units))
        .kernel_name("kiln_kernel");
    settings.address_type.register(&mut builder.scope);
    let scalar = |b: &mut KernelBuilder| <u32 as LaunchArg>::expand(&(), b);
    match which {
        Which::Quant4 => {
            let n = 16 / size_of::<F>();
            macro_rules! with_width {
                ($N:ty) => {{
                    let input = <Array<Vector<F, $N>> as LaunchArg>::expand(&arr, &mut builder);
                    let bounds = <Array<f32> as LaunchArg>::expand(&arr, &mut builder);
                    let order = <Array<u32> as LaunchArg>::expand(&arr, &mut builder);
                    let packed = <Array<u32> as LaunchArg>::expand_output(&arr, &mut builder);
                    let absmax = <Array<u32> as LaunchArg>::expand_output(&arr, &mut builder);
                    let [numel, shift, pad] = [(); 3].map(|_| scalar(&mut builder));
                    let tiny = <f32 as LaunchArg>::expand(&(), &mut builder);
                    let tiny_bits = scalar(&mut builder);
                    quant4_kernel::expand::<F, $N>(
                        &mut builder.scope,
                        n,
                        input,
                        bounds,
                        order,
                        packed,
                        absmax,
                        numel,
                        shift,
                        pad,
                        tiny,
                        tiny_bits,
                    );
                }};
            }
            match n {
                8 => with_width!(Const<8>),
                _ => with_width!(Const<4>),
            }
        }
        Which::Quant8 => {
            let input = <Array<F> as LaunchArg>::expand(&arr, &mut builder);
            let packed = <Array<u32> as LaunchArg>::expand_output(&arr, &mut builder);
            let scales = <Array<u32> as LaunchArg>::expand_output(&arr, &mut builder);
            let [rows, cols, words] = [(); 3].map(|_| scalar(&mut builder));
            quant8_kernel::expand::<F>(
                &mut builder.scope,
                input,
                packed,
                scales,
                rows,
                cols,
                words,
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
    let dump = std::env::var_os("KILN_CUDA_SOURCES").map(std::path::PathBuf::from);
    for which in [Which::Quant4, Which::Quant8] {
        for (dtype, src) in [
            ("f32", source::<f32>(which)),
            ("f16", source::<f16>(which)),
            ("bf16", source::<bf16>(which)),
        ] {
            if let Some(dir) = &dump {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::write(dir.join(format!("quant-{which:?}-{dtype}.cu")), &src).unwrap();
            }
            assert!(src.contains("kiln_kernel"), "{which:?}: {src}");
        }
    }
}
