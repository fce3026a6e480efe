//! Random and expert reference returns for the expert-normalised score (paper §4.1): `(return − random) /
//! (expert − random)`, so a uniform random policy scores 0 and the expert 1. The project computes them itself
//! (`tools/envs/references.py`) and keeps them in a versioned file, `data/references.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Mean and spread of one policy's returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyReturns {
    /// Mean return.
    pub mean: f64,
    /// Standard deviation of the return.
    pub std: f64,
    /// Episodes it was measured on.
    pub episodes: usize,
}

/// The references of one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The simulator's id.
    pub env_id: String,
    /// A uniform random policy.
    pub random: PolicyReturns,
    /// The scripted expert the episodes were recorded with.
    pub expert: PolicyReturns,
}

impl Reference {
    /// The expert-normalised score of a mean return; `None` when expert and random do not differ.
    pub fn normalise(&self, mean_return: f64) -> Option<f64> {
        let span = self.expert.mean - self.random.mean;
        (span.abs() > 1e-12).then(|| (mean_return - self.random.mean) / span)
    }

    /// A standard deviation of returns in normalised units.
    pub fn normalise_spread(&self, std: f64) -> Option<f64> {
        let span = self.expert.mean - self.random.mean;
        (span.abs() > 1e-12).then(|| std / span.abs())
    }
}

/// The references file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct References {
    /// File format version (1).
    pub version: u32,
    /// How the figures were obtained (the command, seeds and episode counts).
    pub how: String,
    /// By environment name (`cartpole`, …).
    pub envs: BTreeMap<String, Reference>,
}

impl References {
    /// Read and check a references file.
    pub fn load(path: &Path) -> Result<Self> {
        let err = |detail: String| Error::Environment {
            env: "references".into(),
            detail: format!("{}: {detail}", path.display()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let r: References = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if r.version != 1 {
            return Err(err(format!("version {} (this gato reads 1)", r.version)));
        }
        for (name, e) in &r.envs {
            let finite = [e.random.mean, e.random.std, e.expert.mean, e.expert.std]
                .iter()
                .all(|x| x.is_finite());
            if !finite {
                return Err(err(format!("`{name}`: a reference is not finite")));
            }
        }
        Ok(r)
    }
}
