//! The KV cache: keys and values of the tokens seen so far, per layer.
//!
//! Each layer holds one preallocated buffer per K and V, `[batch, kv_heads, capacity,
//! head_dim]`, and writes the new positions into it in place: a decode step costs the size of
//! its own keys, not of the whole cache, and the buffers keep one shape from step to step (so
//! nothing is compiled or tuned again). Attention reads the first `len` positions (the flash
//! kernels take the buffer as it is with the number of used positions, as FlashAttention's
//! `flash_attn_with_kvcache` takes `cache_seqlens`). When a pass would overflow the buffer it
//! grows to the next multiple of [`KvCache::GRANULE`] positions beyond twice its size, once.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A layer's cached keys and values after an append: the whole buffers and how many of their
/// positions hold tokens.
#[derive(Debug, Clone)]
pub struct CachedKv<B: Backend> {
    /// Keys, `[batch, kv_heads, capacity, head_dim]`.
    pub k: Tensor<B, 4>,
    /// Values, `[batch, kv_heads, capacity, head_dim]`.
    pub v: Tensor<B, 4>,
    /// Positions in use (the first `len` of the capacity).
    pub len: usize,
}

impl<B: Backend> CachedKv<B> {
    /// The used positions alone, `[batch, kv_heads, len, head_dim]`.
    pub fn used(self) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let len = self.len;
        if self.k.dims()[2] == len {
            (self.k, self.v)
        } else {
            (self.k.narrow(2, 0, len), self.v.narrow(2, 0, len))
        }
    }
}

/// One layer's cached keys and values.
#[derive(Debug, Clone, Default)]
pub struct LayerCache<B: Backend> {
    kv: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    len: usize,
    /// The capacity the first append allocates (at least what it writes).
    reserve: usize,
}

impl<B: Backend> LayerCache<B> {
    /// Writes the new keys/values (`[batch, kv_heads, seq, head_dim]`) after the cached ones and
    /// returns the buffers with the number of positions now in use.
    pub fn append(&mut self, k: Tensor<B, 4>, v: Tensor<B, 4>) -> CachedKv<B> {
        let [b, h, s, d] = k.dims();
        let (kb, vb, start) = self.take_room([b, h, s, d], k.dtype(), &k.device());
        self.write(kb, vb, start, k, v)
    }

    /// Writes `k`/`v` into the buffers [`take_room`](Self::take_room) gave at `start` and
    /// [`commit`](Self::commit)s them.
    pub fn write(
        &mut self,
        kb: Tensor<B, 4>,
        vb: Tensor<B, 4>,
        start: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> CachedKv<B> {
        let [b, h, s, d] = k.dims();
        let range = [0..b, 0..h, start..start + s, 0..d];
        let kb = kb.slice_assign(range.clone(), k);
        let vb = vb.slice_assign(range, v);
        self.commit(kb, vb, start + s)
    }

    /// Takes the buffers out of the cache with room for `s` more positions of a
    /// `[batch, heads, s, head_dim]` append (grown or allocated as [`append`](Self::append)
    /// does), and the position the new ones start at. The caller writes them and hands the
    /// buffers back with [`commit`](Self::commit); until then the cache holds none (so the
    /// buffers' handles are the caller's alone, and may be written in place).
    pub fn take_room(
        &mut self,
        [b, h, s, d]: [usize; 4],
        dtype: burn::tensor::DType,
        device: &B::Device,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, usize) {
        let end = self.len + s;
        let (kb, vb) = match self.kv.take() {
            Some((kb, vb)) if kb.dims()[2] >= end => (kb, vb),
            Some((kb, vb)) => {
                let cap = KvCache::<B>::capacity_for(end.max(2 * kb.dims()[2]));
                (grow(kb, cap), grow(vb, cap))
            }
            None => {
                let cap = KvCache::<B>::capacity_for(end.max(self.reserve));
                let zeros = || Tensor::<B, 4>::zeros([b, h, cap, d], (device, dtype));
                (zeros(), zeros())
            }
        };
        (kb, vb, self.len)
    }

    /// Puts the buffers [`take_room`](Self::take_room) gave back, with `end` positions now in
    /// use, and returns them for attention.
    pub fn commit(&mut self, kb: Tensor<B, 4>, vb: Tensor<B, 4>, end: usize) -> CachedKv<B> {
        self.len = end;
        self.kv = Some((kb.clone(), vb.clone()));
        CachedKv {
            k: kb,
            v: vb,
            len: end,
        }
    }

    /// Cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The batch size of what is cached.
    pub fn batch(&self) -> Option<usize> {
        self.kv.as_ref().map(|(k, _)| k.dims()[0])
    }

    /// Positions the buffers hold (used or not).
    pub fn capacity(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims()[2])
    }
}

/// `t` with its positions (dim 2) extended to `cap` by zeros.
fn grow<B: Backend>(t: Tensor<B, 4>, cap: usize) -> Tensor<B, 4> {
    let [b, h, len, d] = t.dims();
    let extra = Tensor::<B, 4>::zeros([b, h, cap - len, d], (&t.device(), t.dtype()));
    Tensor::cat(vec![t, extra], 2)
}

/// The cache of a whole model.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    /// Per layer.
    pub layers: Vec<LayerCache<B>>,
    /// Tokens processed so far (the position of the next token).
    pub seq_len: usize,
}

impl<B: Backend> KvCache<B> {
    /// Capacities are multiples of this many positions.
    pub const GRANULE: usize = 256;

    /// An empty cache for `layers` layers.
    pub fn new(layers: usize) -> Self {
        Self {
            layers: (0..layers).map(|_| LayerCache::default()).collect(),
            seq_len: 0,
        }
    }

    /// Asks for room for `positions` tokens in every layer before the first pass (e.g. the
    /// prompt plus the new-token budget), so that generation never grows the buffers.
    pub fn reserve(&mut self, positions: usize) {
        for layer in &mut self.layers {
            layer.reserve = layer.reserve.max(positions);
        }
    }

    /// The capacity a buffer holding `positions` tokens gets.
    pub fn capacity_for(positions: usize) -> usize {
        positions.max(1).div_ceil(Self::GRANULE) * Self::GRANULE
    }

    /// The batch size of what is cached (`None` while empty).
    pub fn batch(&self) -> Option<usize> {
        self.layers.iter().find_map(LayerCache::batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::Distribution;

    type B = NdArray;

    fn rand(s: usize) -> Tensor<B, 4> {
        Tensor::random(
            [2, 3, s, 4],
            Distribution::Normal(0.0, 1.0),
            &Default::default(),
        )
    }

    #[test]
    fn appends_in_place_and_grows_keeping_what_was_cached() {
        let mut cache = LayerCache::<B>::default();
        let (k1, v1) = (rand(5), rand(5));
        let out = cache.append(k1.clone(), v1.clone());
        assert_eq!((out.len, out.k.dims()[2]), (5, KvCache::<B>::GRANULE));
        let (k2, v2) = (rand(300), rand(300));
        let out = cache.append(k2.clone(), v2.clone());
        assert_eq!(out.len, 305);
        assert_eq!(cache.capacity(), 512);
        let (k, v) = out.used();
        let want_k = Tensor::cat(vec![k1, k2], 2);
        let want_v = Tensor::cat(vec![v1, v2], 2);
        assert_eq!(k.into_data(), want_k.into_data());
        assert_eq!(v.into_data(), want_v.into_data());
    }

    #[test]
    fn a_reserved_cache_never_grows() {
        let mut cache = KvCache::<B>::new(1);
        cache.reserve(600);
        let out = cache.layers[0].append(rand(500), rand(500));
        assert_eq!(out.k.dims()[2], 768);
        for _ in 0..100 {
            cache.layers[0].append(rand(1), rand(1));
        }
        assert_eq!(cache.layers[0].capacity(), 768);
        assert_eq!(cache.layers[0].len(), 600);
    }
}
