//! The gated MLP's `act(gate) * up` in one launch: one unit per vector.

use burn_cubecl::CubeRuntime;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::glue::{array, cube_count, empty_like, fits_u32, is_float, offset, rows, vector_width};
use crate::nn::Activation;

/// Units per cube.
const UNITS: usize = 256;
/// `sqrt(2 / pi)`, GELU-tanh's inner scale.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// GELU-tanh's cubic coefficient.
const GELU_CUBIC: f32 = 0.044_715;

/// `out = F(F(act(gate)) * up)` for the vector `id = row * row_vecs + i` (`out` contiguous,
/// `gate`/`up` rows `*_stride` vectors apart), `act` computed in f32: SiLU `g / (1 + e^-g)`,
/// or (`gelu`) GELU-tanh `g / (1 + e^(-2u))` with `u = sqrt(2/pi) (g + 0.044715 g^3)`, which
/// is `0.5 g (1 + tanh(u))` without its cancellation for negative `g`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn gated_kernel<F: Float, N: Size>(
    gate: &Array<Vector<F, N>>,
    up: &Array<Vector<F, N>>,
    out: &mut Array<Vector<F, N>>,
    units: u32,
    row_vecs: u32,
    gate_stride: u32,
    up_stride: u32,
    #[comptime] gelu: bool,
    #[define(F)] _dtype: StorageType,
) {
    let id = CUBE_POS * (CUBE_DIM as usize) + (UNIT_POS as usize);
    if id >= units as usize {
        terminate!();
    }
    let rv = row_vecs as usize;
    let row = id / rv;
    let i = id % rv;
    let g = Vector::<f32, N>::cast_from(gate[row * (gate_stride as usize) + i]);
    let u = Vector::<f32, N>::cast_from(up[row * (up_stride as usize) + i]);
    let one = Vector::<f32, N>::new(1.0f32);
    // `g * -1`, not `-g`: CUDA's vector structs (`float_8`) have no unary minus.
    let mut z = g * Vector::<f32, N>::new(-1.0f32);
    if comptime!(gelu) {
        let inner = (g + g * g * g * Vector::<f32, N>::new(f32::new(GELU_CUBIC)))
            * Vector::<f32, N>::new(f32::new(SQRT_2_OVER_PI));
        z = inner * Vector::<f32, N>::new(-2.0f32);
    }
    let act = Vector::<F, N>::cast_from(g / (one + z.exp()));
    out[id] = Vector::<F, N>::cast_from(Vector::<f32, N>::cast_from(act) * u);
}

/// `activation(gate) * up` into a new contiguous tensor. `None` where the kernel does not take
/// these inputs.
pub(super) fn gated<R: CubeRuntime>(
    activation: Activation,
    gate: CubeTensor<R>,
    up: CubeTensor<R>,
) -> Option<CubeTensor<R>> {
    let out = empty_like(&gate);
    launch(activation, gate, up, &out)?;
    Some(out)
}

/// Runs [`gated_kernel()`] into `out`, a contiguous tensor shaped as `gate`.
pub(super) fn launch<R: CubeRuntime>(
    activation: Activation,
    gate: CubeTensor<R>,
    up: CubeTensor<R>,
    out: &CubeTensor<R>,
) -> Option<()> {
    let dtype = gate.dtype;
    let shape = gate.meta.shape().to_vec();
    let like_gate = |t: &CubeTensor<R>| t.dtype == dtype && t.meta.shape().to_vec() == shape;
    if !is_float(dtype) || !like_gate(&up) || !like_gate(out) || !out.is_contiguous() {
        return None;
    }
    let (gate, up) = (rows(gate), rows(up));
    let units = gate.rows * gate.cols;
    if units == 0 || ![&gate.tensor, &up.tensor, out].iter().all(|t| fits_u32(t)) {
        return None;
    }
    let client = gate.tensor.client.clone();
    let n = vector_width(
        &client,
        dtype,
        &[
            gate.cols,
            gate.stride,
            up.stride,
            offset(&gate.tensor),
            offset(&up.tensor),
            offset(out),
        ],
    );
    let units = units / n;
    // SAFETY: every index stays inside the tensors' views, which lie inside their buffers;
    // vectors divide every length, stride and offset.
    unsafe {
        gated_kernel::launch_unchecked::<R>(
            &client,
            cube_count(&client, units.div_ceil(UNITS)),
            CubeDim::new_1d(UNITS as u32),
            n,
            array(&gate.tensor),
            array(&up.tensor),
            array(out),
            units as u32,
            (gate.cols / n) as u32,
            (gate.stride / n) as u32,
            (up.stride / n) as u32,
            activation == Activation::GeluTanh,
            dtype.into(),
        );
    }
    Some(())
}
