//! Choosing the compute device, once, at the edge of the program.
//!
//! `cpu` is burn's `flex` CPU backend. `wgpu` is burn's wgpu backend on whatever adapter
//! wgpu finds (a real GPU, or Mesa's lavapipe software Vulkan device). `auto` takes a
//! hardware GPU when wgpu finds one and the CPU otherwise: a software adapter is slower than
//! the CPU backend, so `auto` never picks it. An explicit `wgpu` request that cannot be met
//! is an error, never a silent fallback.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, DeviceKind};

use crate::error::{ModelError, Result};

/// The user's device request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// A hardware GPU through wgpu if there is one, else the CPU.
    #[default]
    Auto,
    /// The CPU backend.
    Cpu,
    /// wgpu, on any adapter (including a software one).
    Wgpu,
}

impl FromStr for DeviceChoice {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            other => Err(ModelError::Device(format!(
                "unknown device '{other}' (expected auto, cpu or wgpu)"
            ))),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
        })
    }
}

/// Which backend a [`ComputeDevice`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// burn's flex CPU backend.
    Cpu,
    /// burn's wgpu backend.
    Wgpu,
}

impl BackendKind {
    /// A short name (`flex` or `wgpu`), as recorded in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "flex",
            Self::Wgpu => "wgpu",
        }
    }
}

/// A selected device with a description for reports.
#[derive(Clone, Debug)]
pub struct ComputeDevice {
    /// The burn device (without autodiff; attacks enable it where they need it).
    pub device: Device,
    /// The backend.
    pub backend: BackendKind,
    /// What runs the work: the adapter's name and API, or "CPU (N threads)".
    pub adapter: String,
    /// Set when `auto` fell back to the CPU: why (for a one-line warning).
    pub fallback_note: Option<String>,
    /// The largest tensor one device buffer can hold, in bytes (wgpu's storage-binding and
    /// buffer-size limits of the adapter); `None` on the CPU, where host memory is the limit.
    pub max_buffer_bytes: Option<u64>,
}

impl ComputeDevice {
    /// The largest batch for which every activation of a model (`largest_per_sample` bytes
    /// per sample, [`crate::ModelInfo::largest_activation_bytes_per_sample`]) fits in one
    /// device buffer, or `None` when the device sets no such limit. wgpu reports no memory
    /// capacity, so this is the hard limit it does report, not a budget for all activations.
    pub fn max_batch(&self, largest_per_sample: u64) -> Option<usize> {
        let limit = self.max_buffer_bytes?;
        let cap = limit / largest_per_sample.max(1);
        Some(usize::try_from(cap).unwrap_or(usize::MAX))
    }
}

/// A wgpu adapter seen on this machine.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// Graphics API, e.g. "Vulkan".
    pub api: String,
    /// True for software (CPU) adapters.
    pub software: bool,
    /// wgpu's device type.
    pub device_type: String,
    /// The largest buffer a shader can bind, in bytes (the smaller of the adapter's
    /// storage-binding and buffer-size limits).
    pub max_buffer_bytes: u64,
}

/// Lists the wgpu adapters of every graphics API (empty when there is no usable driver).
pub fn wgpu_adapters() -> Vec<AdapterSummary> {
    adapters_of(wgpu::Backends::all())
}

/// The adapters of some graphics APIs. Device selection asks only for the primary ones
/// (Vulkan, Metal, DX12), which burn's wgpu backend computes on: skipping OpenGL's
/// initialisation saves about 20 ms of every run's start.
fn adapters_of(backends: wgpu::Backends) -> Vec<AdapterSummary> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends &= backends;
    let instance = wgpu::Instance::new(desc);
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    adapters
        .into_iter()
        .map(|a| {
            let info = a.get_info();
            let limits = a.limits();
            AdapterSummary {
                max_buffer_bytes: limits
                    .max_storage_buffer_binding_size
                    .min(limits.max_buffer_size),
                name: info.name.clone(),
                api: format!("{:?}", info.backend),
                software: info.device_type == wgpu::DeviceType::Cpu,
                device_type: format!("{:?}", info.device_type),
            }
        })
        .collect()
}

fn cpu_device(note: Option<String>) -> ComputeDevice {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    ComputeDevice {
        device: Device::flex(),
        backend: BackendKind::Cpu,
        adapter: format!("CPU (flex backend, {threads} threads)"),
        fallback_note: note,
        max_buffer_bytes: None,
    }
}

/// Picks the device for a request (see the module docs for the rules).
pub fn select_device(choice: DeviceChoice) -> Result<ComputeDevice> {
    if choice == DeviceChoice::Cpu {
        return Ok(cpu_device(None));
    }
    let adapters = adapters_of(wgpu::Backends::PRIMARY);
    let pick = |kind: &str| adapters.iter().find(|a| a.device_type == kind);
    let hardware = pick("DiscreteGpu")
        .map(|a| (a, DeviceKind::DiscreteGpu(0)))
        .or_else(|| pick("IntegratedGpu").map(|a| (a, DeviceKind::IntegratedGpu(0))))
        .or_else(|| pick("VirtualGpu").map(|a| (a, DeviceKind::VirtualGpu(0))));
    match (choice, hardware) {
        (_, Some((a, kind))) => Ok(ComputeDevice {
            device: Device::wgpu(kind),
            backend: BackendKind::Wgpu,
            adapter: format!("{} ({})", a.name, a.api),
            fallback_note: None,
            max_buffer_bytes: Some(a.max_buffer_bytes),
        }),
        (DeviceChoice::Wgpu, None) => match adapters.iter().find(|a| a.software) {
            Some(a) => Ok(ComputeDevice {
                device: Device::wgpu(DeviceKind::Cpu),
                backend: BackendKind::Wgpu,
                adapter: format!("{} ({}, software)", a.name, a.api),
                fallback_note: None,
                max_buffer_bytes: Some(a.max_buffer_bytes),
            }),
            None => Err(ModelError::Device(
                "--device wgpu was requested but wgpu finds no adapter (install a GPU driver, \
                 or mesa-vulkan-drivers for a software Vulkan device)"
                    .into(),
            )),
        },
        _ => Ok(cpu_device(Some(if adapters.is_empty() {
            "no GPU adapter found; running on the CPU".to_string()
        } else {
            let mut names: Vec<&str> = adapters.iter().map(|a| a.name.as_str()).collect();
            names.dedup();
            format!(
                "only software GPU adapters found ({}); running on the faster CPU backend",
                names.join(", ")
            )
        }))),
    }
}
