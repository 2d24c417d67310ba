//! Tensor infos: name, dims, type and where the bytes are.

use super::GgmlType;

/// One entry of a GGUF file's tensor table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    offset: u64,
    n_elements: u64,
    n_bytes: u64,
}

impl TensorInfo {
    /// Checks the dims against the type and computes sizes; `Err` holds the reason.
    pub(crate) fn new(
        name: String,
        dims: Vec<u64>,
        ty: GgmlType,
        offset: u64,
    ) -> Result<Self, String> {
        let mut n_elements: u64 = 1;
        for &d in &dims {
            if d > i64::MAX as u64 {
                return Err(format!("dim {d} does not fit in i64"));
            }
            n_elements = n_elements
                .checked_mul(d)
                .ok_or_else(|| format!("dims {dims:?} overflow the element count"))?;
        }
        // usize indexing must work for every element on this machine.
        if usize::try_from(n_elements).is_err() {
            return Err(format!("{n_elements} elements do not fit in memory here"));
        }
        let block = ty.block_size() as u64;
        let row_len = dims.first().copied().unwrap_or(1);
        if row_len % block != 0 {
            return Err(format!(
                "row length {row_len} (dims[0]) is not a multiple of the {ty} block size {block}"
            ));
        }
        let n_bytes = (n_elements / block)
            .checked_mul(ty.type_size() as u64)
            .ok_or_else(|| format!("{n_elements} elements of {ty} overflow the byte count"))?;
        Ok(Self {
            name,
            dims,
            ty,
            offset,
            n_elements,
            n_bytes,
        })
    }

    /// The tensor's name (`blk.0.attn_q.weight`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Dims in GGUF order: `dims()[0]` is the contiguous (innermost) one, ggml's `ne[0]`.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// The row-major shape kiln (and torch) use: the GGUF dims reversed.
    ///
    /// A GGUF `[in, out]` weight is `[out, in]` here, the layout of an HF `nn.Linear` weight.
    pub fn shape(&self) -> Vec<usize> {
        // Every dim fits in usize: the element count was checked against usize in `new`.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// The element type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Byte offset of the data, relative to the start of the file's data section.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }

    /// Number of bytes of data.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }

    /// Elements per row (`dims()[0]`; 1 for a tensor without dims).
    pub fn row_len(&self) -> usize {
        self.dims.first().map_or(1, |&d| d as usize)
    }

    /// Number of rows: the product of all dims but the first (0 if the tensor is empty).
    pub fn n_rows(&self) -> usize {
        if self.row_len() == 0 {
            return 0;
        }
        (self.n_elements / self.row_len() as u64) as usize
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_len() / self.ty.block_size() * self.ty.type_size()
    }
}
