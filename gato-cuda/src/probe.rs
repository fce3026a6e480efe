//! Finding a CUDA driver and device without letting cudarc panic.

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

/// Run a cudarc call, turning a panic (missing symbol or library) into a one-line error, printed by no panic hook.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    gato_core::panics::catch_quietly(f).unwrap_or_else(|msg| Err(format!("{what} failed: {msg}")))
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

/// What [`findings`] saw on this machine, before [`decide`] turns it into a verdict. Kept as plain data so the
/// decision is tested on machines without a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFindings {
    /// The driver library that opened, or why none did.
    pub driver: Result<&'static str, String>,
    /// The device asked for (`None` when the driver was not found, so it was not queried).
    pub device: Option<Result<DeviceInfo, String>>,
    /// Whether a cuBLAS library opens (the backend's matrix products).
    pub cublas: bool,
    /// Whether an NVRTC library opens (the backend's kernels are compiled at first use).
    pub nvrtc: bool,
}

/// Look for the driver, device `ordinal`, cuBLAS and NVRTC. Never panics: each library is opened with
/// `libloading` before cudarc touches it.
pub fn findings(ordinal: usize) -> ProbeFindings {
    let driver = driver_library();
    let device = driver.is_ok().then(|| device_info(ordinal));
    // SAFETY: these only try to open the libraries by name (and close them); no symbol is called.
    let (cublas, nvrtc) = unsafe {
        (
            cudarc::cublas::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
        )
    };
    ProbeFindings {
        driver,
        device,
        cublas,
        nvrtc,
    }
}

/// The verdict on `f`: `Ok(device description)` when the driver, the device, cuBLAS and NVRTC are all there, else
/// the first thing missing (the error after "CUDA backend unavailable: ").
pub fn decide(f: &ProbeFindings) -> Result<String, String> {
    let lib = f.driver.clone()?;
    let dev = match &f.device {
        Some(Ok(dev)) => dev,
        Some(Err(e)) => return Err(e.clone()),
        None => return Err(format!("driver {lib} loaded but no device was queried")),
    };
    if !f.cublas {
        return Err(format!(
            "found {dev}, but no cuBLAS library (libcublas) could be opened: install the CUDA toolkit's cuBLAS or \
             put its directory on LD_LIBRARY_PATH"
        ));
    }
    if !f.nvrtc {
        return Err(format!(
            "found {dev}, but no NVRTC library (libnvrtc) could be opened: install the CUDA toolkit's NVRTC (or the \
             nvidia-cuda-nvrtc wheel, see tools/setup-nvrtc.sh) or put its directory on LD_LIBRARY_PATH"
        ));
    }
    Ok(dev.to_string())
}

/// The registry probe for device 0: `Ok(description)` when the backend can run, else the reason. Never panics.
pub fn probe() -> Result<String, String> {
    decide(&findings(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h200() -> DeviceInfo {
        DeviceInfo {
            ordinal: 0,
            name: "NVIDIA H200".into(),
            total_memory: 150 << 30,
            compute_capability: (9, 0),
        }
    }

    fn all_present() -> ProbeFindings {
        ProbeFindings {
            driver: Ok("libcuda.so.1"),
            device: Some(Ok(h200())),
            cublas: true,
            nvrtc: true,
        }
    }

    /// Everything present: the backend is available and described by its device.
    #[test]
    fn decide_accepts_a_complete_machine() {
        let d = decide(&all_present()).unwrap();
        assert_eq!(d, "cuda:0 NVIDIA H200 (150.0 GiB, compute capability 9.0)");
    }

    /// Each missing piece is refused with a reason naming it.
    #[test]
    fn decide_refuses_each_missing_piece() {
        let no_driver = ProbeFindings {
            driver: Err("no CUDA driver found (libcuda.so.1: cannot open)".into()),
            device: None,
            ..all_present()
        };
        assert!(decide(&no_driver)
            .unwrap_err()
            .starts_with("no CUDA driver found"));
        let no_device = ProbeFindings {
            device: Some(Err("the CUDA driver reports no devices".into())),
            ..all_present()
        };
        assert_eq!(
            decide(&no_device).unwrap_err(),
            "the CUDA driver reports no devices"
        );
        let no_cublas = ProbeFindings {
            cublas: false,
            ..all_present()
        };
        let e = decide(&no_cublas).unwrap_err();
        assert!(e.contains("NVIDIA H200") && e.contains("cuBLAS"), "{e}");
        let no_nvrtc = ProbeFindings {
            nvrtc: false,
            ..all_present()
        };
        let e = decide(&no_nvrtc).unwrap_err();
        assert!(e.contains("NVRTC"), "{e}");
    }

    /// On this machine the probe returns (never panics) and agrees with the findings: without a driver it names
    /// the missing library; with one it describes the device or names what is missing.
    #[test]
    fn probe_reports_without_panicking() {
        let f = findings(0);
        let verdict = probe();
        assert_eq!(verdict, decide(&f));
        match (&f.driver, &verdict) {
            (Err(_), Err(reason)) => {
                assert!(reason.starts_with("no CUDA driver found ("), "{reason}")
            }
            (Err(_), Ok(d)) => panic!("available without a driver: {d}"),
            (Ok(lib), v) => println!("driver library {lib} present: {v:?}"),
        }
    }
}
