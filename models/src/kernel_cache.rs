//! A persistent cache of compiled GPU kernels, so that only the first run of a build on a
//! machine pays for compiling them (as Triton and `torch.compile` keep theirs).
//!
//! CubeCL compiles every kernel the first time a process launches it (CUDA: NVRTC to PTX, then
//! the driver to machine code). For a Llama decoder that is a few dozen kernels and seconds of
//! the first prompt; measured on an H100 with a Llama-3.2-1B shape, the first 514-token prefill
//! took 3.1 s of compilation against 0.08 s warm, and the first decode step ~1 s. With the
//! cache on, CubeCL stores each kernel's PTX under a directory and later processes load it
//! (the driver keeps its own cache of the machine code).
//!
//! The directory is keyed by the running executable (size and modification time) and by the
//! GPUs the driver lists: CubeCL's cache key names a kernel by its type and compile-time
//! parameters, not its source, so a rebuilt kiln or another GPU must not read old entries.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

/// Where the kernel cache of this executable and machine lives under `root`.
pub fn cache_dir(root: &Path) -> PathBuf {
    let mut h = DefaultHasher::new();
    if let Some(meta) = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::metadata(p).ok())
    {
        meta.len().hash(&mut h);
        meta.modified().ok().hash(&mut h);
    }
    gpu_models().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    root.join(format!("{:016x}", h.finish()))
}

/// The `Model:` lines of the NVIDIA driver's GPU list (empty without the driver).
fn gpu_models() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc/driver/nvidia/gpus") else {
        return Vec::new();
    };
    let mut models: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("information")).ok())
        .filter_map(|info| {
            info.lines()
                .find(|l| l.starts_with("Model:"))
                .map(|l| l.trim().to_owned())
        })
        .collect();
    models.sort();
    models
}

/// Turns the compiled-kernel cache on in `dir` for this process (created if missing), with the
/// autotune results under `dir/autotune` unless configured elsewhere, keeping
/// whatever else `cubecl.toml` or the `CUBECL_*` variables configure; a `cubecl.toml` that
/// sets its own `compilation.cache` wins. Must run before the first GPU tensor is made:
/// returns `false` (and changes nothing) when CubeCL's configuration was already read, or
/// when this build has no CubeCL backend.
pub fn enable(dir: &Path) -> bool {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    {
        use cubecl::config::cache::CacheConfig;
        use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

        if std::fs::create_dir_all(dir).is_err() {
            tracing::warn!("kernel cache {} cannot be created: not used", dir.display());
            return false;
        }
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        if config.compilation.cache.is_none() {
            config.compilation.cache = Some(CacheConfig::File(dir.to_path_buf()));
        }
        // Autotune results (which matmul kernel is fastest per shape) beside the kernels,
        // rather than in the `target` dir of whatever Cargo project the process runs in.
        if matches!(config.autotune.cache, CacheConfig::Target) {
            config.autotune.cache = CacheConfig::File(dir.join("autotune"));
        }
        // `set` refuses (panics) once the configuration was read; nothing here read it, but a
        // caller may have: keep that a `false`, not an abort.
        let set = std::panic::catch_unwind(|| CubeClRuntimeConfig::set(config)).is_ok();
        if set {
            tracing::debug!("compiled kernels cached in {}", dir.display());
        }
        set
    }
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    {
        let _ = dir;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_stable_for_one_executable_and_under_the_root() {
        let root = Path::new("/some/root");
        let a = cache_dir(root);
        assert_eq!(a, cache_dir(root));
        assert!(a.starts_with(root));
        assert_eq!(a.file_name().unwrap().len(), 16);
    }
}
