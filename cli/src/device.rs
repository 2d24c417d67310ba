//! `--device auto|cpu|cuda`.

use std::fmt;

use anyhow::{Result, bail};

/// What the user asked for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA when this build has it and a GPU is usable, else the CPU.
    Auto,
    /// The CPU (burn-ndarray).
    Cpu,
    /// The first CUDA GPU (burn-cuda).
    Cuda,
}

/// What `--device` resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The CPU.
    Cpu,
    /// A CUDA GPU by index.
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// The backends this binary was built with.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut b = vec!["cpu"];
    if cfg!(feature = "cuda") {
        b.push("cuda");
    }
    if cfg!(feature = "wgpu") {
        b.push("wgpu");
    }
    b
}

/// Whether an NVIDIA driver is loaded (the CUDA backend finds libcuda at run time).
fn nvidia_driver_present() -> bool {
    std::path::Path::new("/proc/driver/nvidia/version").exists()
}

impl DeviceChoice {
    /// Resolves `auto` and checks that the choice is possible in this build.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto if cfg!(feature = "cuda") && nvidia_driver_present() => {
                Ok(Device::Cuda(0))
            }
            DeviceChoice::Auto => Ok(Device::Cpu),
            DeviceChoice::Cuda if !cfg!(feature = "cuda") => bail!(
                "this kiln was built without CUDA; rebuild with `--features cuda` or use `--device cpu`"
            ),
            DeviceChoice::Cuda if !nvidia_driver_present() => {
                bail!("--device cuda: no NVIDIA driver is loaded on this machine")
            }
            DeviceChoice::Cuda => Ok(Device::Cuda(0)),
        }
    }
}

/// Work that runs on whichever burn backend `--device` selected.
pub trait Job {
    /// What the job returns.
    type Output;
    /// Runs on backend `B`.
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Runs `job` on the backend of `device`.
pub fn run_job<J: Job>(device: Device, job: J) -> Result<J::Output> {
    match device {
        Device::Cpu => job.run::<burn::backend::NdArray>(Default::default()),
        #[cfg(feature = "cuda")]
        Device::Cuda(i) => {
            if let Some(root) = kernel_cache_root() {
                kiln_models::kernel_cache::enable(&kiln_models::kernel_cache::cache_dir(&root));
            }
            job.run::<burn::backend::Cuda>(burn::backend::cuda::CudaDevice::new(i))
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => bail!("this kiln was built without CUDA"),
    }
}

/// Where compiled GPU kernels are kept between runs: `$KILN_KERNEL_CACHE` (`off` or `0`: not
/// kept), else `$XDG_CACHE_HOME/kiln/kernels`, else `~/.cache/kiln/kernels`.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn kernel_cache_root() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(v) = var("KILN_KERNEL_CACHE") {
        return match v.to_str() {
            Some("off" | "0") => None,
            _ => Some(PathBuf::from(v)),
        };
    }
    if let Some(xdg) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("kiln").join("kernels"));
    }
    var("HOME").map(|home| {
        PathBuf::from(home)
            .join(".cache")
            .join("kiln")
            .join("kernels")
    })
}
