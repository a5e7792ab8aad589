//! The likely causes of checkpoints or outputs that differ: the differences between two sides,
//! grouped by what changes float results and ordered by how likely each group explains a
//! different result (code, data, the command and seed, packages, the BLAS library, the CPU's
//! instruction sets, thread counts and affinity, numerics variables, the GPU stack, the rest of
//! the system), one line each. `cairn diff` and `cairn rebuild` show them when the effects
//! differ.

use serde::Serialize;

use super::{Area, Reported};
use crate::probe::env::is_thread_variable;

/// A group of differences that can explain a different result, most likely first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// The code.
    Code,
    /// A dataset.
    Data,
    /// The command line.
    Command,
    /// The seed.
    Seed,
    /// The Python interpreter or packages, or the dependency lock files.
    Packages,
    /// The BLAS/LAPACK library a numeric package loads.
    Blas,
    /// The CPU model and the instruction sets kernels dispatch on.
    CpuFeatures,
    /// Thread counts: CPU count, affinity, cgroup quota, thread-pool variables.
    Threads,
    /// Variables that choose kernels or rounding (`MKL_CBWR`, `XLA_FLAGS`, ...).
    NumericsVariables,
    /// The GPUs, their driver and CUDA, the PyTorch build.
    Gpu,
    /// OS, architecture, C library.
    System,
}

impl Cause {
    /// The cause as words, at the start of its line.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Code => "code",
            Cause::Data => "data",
            Cause::Command => "command",
            Cause::Seed => "seed",
            Cause::Packages => "packages",
            Cause::Blas => "BLAS library",
            Cause::CpuFeatures => "CPU instruction sets",
            Cause::Threads => "thread counts and affinity",
            Cause::NumericsVariables => "numerics variables",
            Cause::Gpu => "GPU, driver and CUDA",
            Cause::System => "OS and C library",
        }
    }
}

/// One likely cause: its group and one line naming what differs in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LikelyCause {
    /// The group.
    pub cause: Cause,
    /// What differs, for people (`numpy 1.26.4 -> 2.0.0, scipy 1.11.4 -> 1.13.0`).
    pub line: String,
}

/// At most this many items are named on one line; the rest are counted.
const ITEMS_PER_LINE: usize = 3;

/// Which group a difference belongs to; `None` for effects and the exit code.
fn cause_of(area: Area, subject: &str) -> Option<Cause> {
    Some(match area {
        Area::Code => Cause::Code,
        Area::Data => Cause::Data,
        Area::Command if subject == "command" => Cause::Command,
        Area::Command => return None,
        Area::Seed => Cause::Seed,
        Area::Python | Area::Lockfile => Cause::Packages,
        Area::Env if is_thread_variable(subject) => Cause::Threads,
        Area::Env => Cause::NumericsVariables,
        Area::Host => match subject {
            s if s.starts_with("blas ") => Cause::Blas,
            "cpu features" | "cpu" => Cause::CpuFeatures,
            "cores" | "affinity" | "cpu quota" => Cause::Threads,
            "os" | "arch" | "glibc" => Cause::System,
            _ => Cause::Gpu,
        },
        Area::Checkpoint | Area::Output => return None,
    })
}

/// The likely causes among `differences` (each with its area), one line per group, most
/// likely first. Empty when no cause differs.
pub fn likely_causes<'a>(
    differences: impl IntoIterator<Item = (Area, &'a Reported)>,
) -> Vec<LikelyCause> {
    let mut groups: std::collections::BTreeMap<Cause, Vec<String>> = Default::default();
    for (area, d) in differences {
        let Some(cause) = cause_of(area, &d.subject) else {
            continue;
        };
        let item = match cause {
            Cause::Code => d.path.clone().unwrap_or_else(|| d.subject.clone()),
            Cause::Data => match &d.path {
                Some(p) => format!("{}/{p}", d.subject),
                None => d.subject.clone(),
            },
            _ => {
                let subject = d.subject.strip_prefix("blas ").unwrap_or(&d.subject);
                match &d.detail {
                    Some(detail) => format!("{subject} {}", first_clause(detail)),
                    None => format!("{subject} {}", d.change.as_str()),
                }
            }
        };
        let items = groups.entry(cause).or_default();
        if !items.contains(&item) {
            items.push(item);
        }
    }
    groups
        .into_iter()
        .map(|(cause, items)| {
            let mut line = items
                .iter()
                .take(ITEMS_PER_LINE)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if items.len() > ITEMS_PER_LINE {
                line.push_str(&format!(", and {} more", items.len() - ITEMS_PER_LINE));
            }
            LikelyCause { cause, line }
        })
        .collect()
}

/// The values of a detail without the reason after them (`1.0 -> 2.0: installed from another
/// source` is `1.0 -> 2.0`): the line names the group, the values say what changed.
fn first_clause(detail: &str) -> &str {
    detail.split(": ").next().unwrap_or(detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Change;

    fn reported(subject: &str, detail: &str) -> Reported {
        Reported {
            subject: subject.into(),
            path: None,
            change: Change::Changed,
            detail: Some(detail.into()),
        }
    }

    #[test]
    fn causes_come_in_order_one_line_each() {
        let items = [
            (Area::Host, reported("gpu driver", "550.54 -> 535.1")),
            (Area::Env, reported("MKL_CBWR", "AUTO -> COMPATIBLE")),
            (Area::Env, reported("OMP_NUM_THREADS", "4 -> 1")),
            (
                Area::Host,
                reported("affinity", "2 -> 1: differs between any two machines"),
            ),
            (
                Area::Host,
                reported("cpu features", "avx512f -> none: instruction sets"),
            ),
            (
                Area::Host,
                reported("blas numpy", "openblas -> mkl: another BLAS library"),
            ),
            (Area::Python, reported("numpy", "1.26.4 -> 2.0.0")),
            (
                Area::Checkpoint,
                reported("ckpt/model.bin", "digest differs"),
            ),
            (Area::Command, reported("exit-code", "0 -> 1")),
        ];
        let got = likely_causes(items.iter().map(|(a, r)| (*a, r)));
        let lines: Vec<String> = got
            .iter()
            .map(|c| format!("{}: {}", c.cause.label(), c.line))
            .collect();
        assert_eq!(
            lines,
            [
                "packages: numpy 1.26.4 -> 2.0.0",
                "BLAS library: numpy openblas -> mkl",
                "CPU instruction sets: cpu features avx512f -> none",
                "thread counts and affinity: OMP_NUM_THREADS 4 -> 1, affinity 2 -> 1",
                "numerics variables: MKL_CBWR AUTO -> COMPATIBLE",
                "GPU, driver and CUDA: gpu driver 550.54 -> 535.1",
            ]
        );
    }

    #[test]
    fn long_groups_are_counted() {
        let items: Vec<Reported> = (0..5)
            .map(|i| reported(&format!("pkg{i}"), "1 -> 2"))
            .collect();
        let got = likely_causes(items.iter().map(|r| (Area::Python, r)));
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].line,
            "pkg0 1 -> 2, pkg1 1 -> 2, pkg2 1 -> 2, and 2 more"
        );
        assert!(likely_causes(std::iter::empty()).is_empty());
    }
}
