//! Finding a CUDA driver and device without letting cudarc panic.

use std::panic;

use cudarc::driver::sys::CUdevice_attribute;

/// File names of the CUDA driver library, tried in order.
#[cfg(target_os = "windows")]
const DRIVER_LIBRARIES: &[&str] = &["nvcuda.dll"];
#[cfg(not(target_os = "windows"))]
const DRIVER_LIBRARIES: &[&str] = &["libcuda.so.1", "libcuda.so"];

/// The first CUDA driver library the platform loader can open, or why none could be opened.
pub fn driver_library() -> Result<&'static str, String> {
    let mut errors = Vec::new();
    for name in DRIVER_LIBRARIES {
        // SAFETY: opening the NVIDIA driver library runs only its own initialisers; we close it at once.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => {
                drop(lib);
                return Ok(name);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(format!("no CUDA driver found ({})", errors.join("; ")))
}

/// A CUDA device as `gato backends` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device ordinal.
    pub ordinal: usize,
    /// Marketing name, e.g. `NVIDIA H200`.
    pub name: String,
    /// Global memory in bytes.
    pub total_memory: usize,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cuda:{} {} ({:.1} GiB, compute capability {}.{})",
            self.ordinal,
            self.name,
            self.total_memory as f64 / (1u64 << 30) as f64,
            self.compute_capability.0,
            self.compute_capability.1
        )
    }
}

/// Run a cudarc call, turning a panic (missing symbol or library) into an error.
fn guarded<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, String> + panic::UnwindSafe,
) -> Result<T, String> {
    match panic::catch_unwind(f) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Err(format!("{what} failed: {msg}"))
        }
    }
}

/// Device `ordinal`, after checking that a driver library exists.
pub fn device_info(ordinal: usize) -> Result<DeviceInfo, String> {
    driver_library()?;
    guarded("CUDA driver query", move || {
        use cudarc::driver::result;
        result::init().map_err(|e| format!("cuInit failed: {e}"))?;
        let count =
            result::device::get_count().map_err(|e| format!("cuDeviceGetCount failed: {e}"))?;
        if count <= 0 {
            return Err("the CUDA driver reports no devices".to_string());
        }
        if ordinal >= count as usize {
            return Err(format!(
                "device {ordinal} requested, the driver reports {count} (valid: 0..{count})"
            ));
        }
        let dev =
            result::device::get(ordinal as i32).map_err(|e| format!("cuDeviceGet failed: {e}"))?;
        let name =
            result::device::get_name(dev).map_err(|e| format!("cuDeviceGetName failed: {e}"))?;
        // SAFETY: `dev` is a valid device handle obtained above.
        let total_memory = unsafe { result::device::total_mem(dev) }
            .map_err(|e| format!("cuDeviceTotalMem failed: {e}"))?;
        // SAFETY: as above; the attributes exist on every CUDA version cudarc supports.
        let attr = |a| unsafe { result::device::get_attribute(dev, a) };
        let major = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
            .map_err(|e| e.to_string())?;
        let minor = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
            .map_err(|e| e.to_string())?;
        Ok(DeviceInfo {
            ordinal,
            name,
            total_memory,
            compute_capability: (major, minor),
        })
    })
}

/// The registry probe: `Ok(description)` when the backend can run, else the reason. Never panics.
pub fn probe() -> Result<String, String> {
    let dev = device_info(0)?;
    Err(format!(
        "found {dev}, but the CUDA kernels are not part of this build yet"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without a driver the probe names the missing library; with one it names the device. Either
    /// way it returns instead of panicking.
    #[test]
    fn probe_reports_without_panicking() {
        let reason = probe().unwrap_err();
        match driver_library() {
            Err(_) => assert!(reason.starts_with("no CUDA driver found ("), "{reason}"),
            Ok(lib) => {
                println!("driver library {lib} present: {reason}");
                assert!(!reason.is_empty());
            }
        }
    }
}
