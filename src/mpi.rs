//! MPI rank detection and the multi-rank layout of a results directory.
//!
//! The rank comes from the launcher's environment (first found of
//! `OMPI_COMM_WORLD_RANK`, `PMI_RANK`, `PMIX_RANK`, `SLURM_PROCID`,
//! `MV2_COMM_WORLD_RANK`); each rank writes only `raw/<host>.<rank>.<pid>/`.

/// Rank variables, in the order they are tried.
pub const RANK_VARS: &[&str] = &[
    "OMPI_COMM_WORLD_RANK",
    "PMI_RANK",
    "PMIX_RANK",
    "SLURM_PROCID",
    "MV2_COMM_WORLD_RANK",
];

/// World-size variables, in the order they are tried.
pub const SIZE_VARS: &[&str] = &[
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMIX_SIZE",
    "SLURM_NTASKS",
    "MV2_COMM_WORLD_SIZE",
];

/// Job-id variables: ranks of one job share a results directory.
pub const JOB_VARS: &[&str] = &[
    "SLURM_JOB_ID",
    "OMPI_MCA_orte_ess_jobid",
    "PMIX_NAMESPACE",
    "PMI_JOBID",
];

/// Where this process sits in an MPI job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MpiContext {
    /// This rank, None outside MPI.
    pub rank: Option<u32>,
    /// World size when the launcher says.
    pub world_size: Option<u32>,
    /// Job id when the launcher says.
    pub job: Option<String>,
}

impl MpiContext {
    /// Read from the environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read from any variable lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let first = |vars: &[&str]| {
            vars.iter()
                .find_map(|v| get(v).and_then(|s| s.trim().parse::<u32>().ok()))
        };
        MpiContext {
            rank: first(RANK_VARS),
            world_size: first(SIZE_VARS),
            job: JOB_VARS
                .iter()
                .find_map(|v| get(v))
                .filter(|s| !s.is_empty()),
        }
    }
}

/// Name of a raw directory: `<host>.<rank>.<pid>`, rank `-` outside MPI.
pub fn raw_dir_name(host: &str, rank: Option<u32>, pid: u32) -> String {
    let rank = rank.map(|r| r.to_string()).unwrap_or_else(|| "-".into());
    let host: String = host
        .chars()
        .map(|c| if c == '/' || c == '.' { '_' } else { c })
        .collect();
    format!("{host}.{rank}.{pid}")
}

/// Parse a raw directory name back into (host, rank, pid).
pub fn parse_raw_dir_name(name: &str) -> Option<(String, Option<u32>, u32)> {
    let mut parts = name.rsplitn(3, '.');
    let pid = parts.next()?.parse().ok()?;
    let rank = match parts.next()? {
        "-" => None,
        r => Some(r.parse().ok()?),
    };
    let host = parts.next()?.to_string();
    Some((host, rank, pid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn first_rank_variable_wins() {
        let env: HashMap<&str, &str> =
            [("PMI_RANK", "3"), ("SLURM_PROCID", "5"), ("PMI_SIZE", "8")]
                .into_iter()
                .collect();
        let c = MpiContext::from_lookup(|k| env.get(k).map(|s| s.to_string()));
        assert_eq!(c.rank, Some(3));
        assert_eq!(c.world_size, Some(8));
    }

    #[test]
    fn raw_dir_names_round_trip() {
        assert_eq!(raw_dir_name("n1", None, 42), "n1.-.42");
        assert_eq!(parse_raw_dir_name("n1.-.42"), Some(("n1".into(), None, 42)));
        assert_eq!(
            parse_raw_dir_name(&raw_dir_name("a.b", Some(7), 9)),
            Some(("a_b".into(), Some(7), 9))
        );
    }
}
