//! Per-task mixing weights (paper §3 and Table 1: each dataset is sampled with its own weight; `docs/design.md`
//! §8): by training tokens (the default), uniform over tasks, or one weight per task given by name.

use std::fmt;
use std::str::FromStr;

use crate::error::{DataError, Result};

/// How often each task is drawn when a training sequence is sampled.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TaskWeights {
    /// In proportion to each task's training tokens (a task with more data is seen more).
    #[default]
    Tokens,
    /// Every task equally often.
    Uniform,
    /// One non-negative weight per task, by name (relative; they need not sum to 1). A name matches a task
    /// whose environment id it equals, or — ignoring case and everything but letters and digits — whose id it
    /// is part of when no other task's id also holds it (`breakout` → `ALE/Breakout-v5`).
    Named(Vec<(String, f64)>),
}

fn bad(spec: &str, detail: impl Into<String>) -> DataError {
    DataError::Weights {
        spec: spec.to_string(),
        detail: detail.into(),
    }
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl FromStr for TaskWeights {
    type Err = DataError;

    /// `tokens`, `uniform`, or `NAME=W,NAME=W,...` with every `W` finite and ≥ 0.
    fn from_str(spec: &str) -> Result<Self> {
        match spec.trim() {
            "tokens" => return Ok(TaskWeights::Tokens),
            "uniform" => return Ok(TaskWeights::Uniform),
            "" => return Err(bad(spec, "empty: expected tokens, uniform or NAME=W,...")),
            _ => {}
        }
        let mut named = Vec::new();
        for part in spec.split(',') {
            let (name, w) = part.split_once('=').ok_or_else(|| {
                bad(
                    spec,
                    format!("`{part}` is not NAME=W (expected tokens, uniform or NAME=W,...)"),
                )
            })?;
            let name = name.trim();
            if name.is_empty() {
                return Err(bad(spec, format!("`{part}` has no task name")));
            }
            let w: f64 = w
                .trim()
                .parse()
                .map_err(|_| bad(spec, format!("weight of `{name}`: `{w}` is not a number")))?;
            if !w.is_finite() || w < 0.0 {
                return Err(bad(
                    spec,
                    format!("weight of `{name}`: {w} is out of range: allowed finite and >= 0"),
                ));
            }
            if named.iter().any(|(n, _): &(String, f64)| n == name) {
                return Err(bad(spec, format!("`{name}` is given twice")));
            }
            named.push((name.to_string(), w));
        }
        Ok(TaskWeights::Named(named))
    }
}

impl fmt::Display for TaskWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskWeights::Tokens => f.write_str("tokens"),
            TaskWeights::Uniform => f.write_str("uniform"),
            TaskWeights::Named(named) => {
                let parts: Vec<String> = named.iter().map(|(n, w)| format!("{n}={w}")).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

impl TaskWeights {
    /// The weight of each task, in the order of `tasks` (`(environment id, training tokens)`). Errors: a name
    /// that matches no task or several, a task with no weight, or weights that are all zero.
    pub fn resolve(&self, tasks: &[(&str, usize)]) -> Result<Vec<f64>> {
        let spec = self.to_string();
        let weights = match self {
            TaskWeights::Tokens => tasks.iter().map(|&(_, n)| n as f64).collect(),
            TaskWeights::Uniform => vec![1.0; tasks.len()],
            TaskWeights::Named(named) => {
                let ids: Vec<&str> = tasks.iter().map(|&(id, _)| id).collect();
                let mut weights: Vec<Option<f64>> = vec![None; tasks.len()];
                for (name, w) in named {
                    let exact: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == name).collect();
                    let hits = if exact.is_empty() {
                        let key = squash(name);
                        (0..ids.len())
                            .filter(|&i| !key.is_empty() && squash(ids[i]).contains(&key))
                            .collect()
                    } else {
                        exact
                    };
                    match hits.as_slice() {
                        [i] if weights[*i].is_some() => {
                            return Err(bad(&spec, format!("task `{}` is given twice", ids[*i])))
                        }
                        [i] => weights[*i] = Some(*w),
                        [] => {
                            return Err(bad(
                                &spec,
                                format!("`{name}` names no task; the tasks are {}", ids.join(", ")),
                            ))
                        }
                        _ => {
                            let all: Vec<&str> = hits.iter().map(|&i| ids[i]).collect();
                            return Err(bad(
                                &spec,
                                format!("`{name}` names several tasks: {}", all.join(", ")),
                            ));
                        }
                    }
                }
                weights
                    .into_iter()
                    .zip(&ids)
                    .map(|(w, id)| {
                        w.ok_or_else(|| {
                            bad(
                                &spec,
                                format!("task `{id}` has no weight (give every task one)"),
                            )
                        })
                    })
                    .collect::<Result<Vec<f64>>>()?
            }
        };
        if !weights.iter().any(|&w| w > 0.0) {
            return Err(bad(
                &spec,
                "every task's weight is 0: at least one must be > 0",
            ));
        }
        Ok(weights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASKS: [(&str, usize); 3] = [
        ("ALE/Breakout-v5", 500),
        ("CartPole-v1", 300),
        ("Meta-World/MT1/reach-v3", 200),
    ];

    #[test]
    fn presets_and_names() {
        let t: TaskWeights = "tokens".parse().unwrap();
        assert_eq!(t.resolve(&TASKS).unwrap(), vec![500.0, 300.0, 200.0]);
        let u: TaskWeights = "uniform".parse().unwrap();
        assert_eq!(u.resolve(&TASKS).unwrap(), vec![1.0; 3]);
        let n: TaskWeights = "breakout=0.5, CartPole-v1=2,metaworld=0".parse().unwrap();
        assert_eq!(n.resolve(&TASKS).unwrap(), vec![0.5, 2.0, 0.0]);
        assert_eq!(n.to_string().parse::<TaskWeights>().unwrap(), n);
    }

    #[test]
    fn bad_specs_name_what_is_wrong() {
        for (spec, needle) in [
            ("", "empty"),
            ("cartpole", "not NAME=W"),
            ("=1", "no task name"),
            ("cartpole=x", "not a number"),
            ("cartpole=-1", "out of range"),
            ("cartpole=NaN", "out of range"),
            ("cartpole=1,cartpole=2", "twice"),
        ] {
            let e = spec.parse::<TaskWeights>().unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
        for (spec, needle) in [
            ("pong=1,breakout=1,cartpole=1,metaworld=1", "names no task"),
            ("v=1", "several tasks"),
            ("breakout=1,cartpole=1", "has no weight"),
            ("breakout=0,cartpole=0,metaworld=0", "at least one"),
            (
                "breakout=1,ALE/Breakout-v5=1,cartpole=1,metaworld=1",
                "twice",
            ),
        ] {
            let w: TaskWeights = spec.parse().unwrap();
            let e = w.resolve(&TASKS).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }
}
