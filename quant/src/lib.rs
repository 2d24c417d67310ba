//! kiln-quant (work in progress)
