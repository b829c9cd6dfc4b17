//! MPI rank detection, the multi-rank layout of a results directory, and which modules
//! are MPI libraries (read by finalize's wait classes, `--frames program` and the views).
//!
//! The rank comes from the launcher's environment (first found of
//! `OMPI_COMM_WORLD_RANK` (Open MPI), `PMI_RANK` (MPICH and Intel MPI's Hydra),
//! `PMIX_RANK` (PMIx launchers, Open MPI 5), `SLURM_PROCID` (srun), `MV2_COMM_WORLD_RANK`
//! (MVAPICH)); each rank writes only `raw/<host>.<rank>.<pid>/`, including its own
//! `manifest.json` with its notices. Only one process writes the top-level manifest
//! (see `collect`). Notices are printed once for the whole job, by rank 0, with the
//! number of ranks each applies to ([`job_notices`]).

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
    "PMI_KVSNAME",
];

/// Rank-on-this-node variables.
pub const LOCAL_RANK_VARS: &[&str] = &[
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MPI_LOCALRANKID",
    "PMIX_LOCAL_RANK",
    "SLURM_LOCALID",
    "MV2_COMM_WORLD_LOCAL_RANK",
];

/// Node-index variables (which node of the job this is).
pub const NODE_VARS: &[&str] = &["SLURM_NODEID"];

/// Overrides the host name in raw directory names and the manifest: for containers
/// whose host names collide, and for tests that simulate several hosts on one.
pub const HOSTNAME_VAR: &str = "HWPROF_HOSTNAME";

/// Where this process sits in an MPI job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MpiContext {
    /// This rank, None outside MPI.
    pub rank: Option<u32>,
    /// World size when the launcher says.
    pub world_size: Option<u32>,
    /// Job id when the launcher says.
    pub job: Option<String>,
    /// Rank on this node when the launcher says.
    pub local_rank: Option<u32>,
    /// Index of this node in the job when the launcher says (Slurm).
    pub node: Option<u32>,
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
            local_rank: first(LOCAL_RANK_VARS),
            node: first(NODE_VARS),
        }
    }

    /// Whether this process prints notices as they happen: outside MPI yes; in a job
    /// no, rank 0 prints each distinct notice once at the end ([`job_notices`]).
    pub fn prints_notices_live(&self) -> bool {
        self.rank.is_none()
    }
}

/// This host's name as written in raw directory names: `HWPROF_HOSTNAME` when set.
pub fn host_name() -> String {
    match std::env::var(HOSTNAME_VAR) {
        Ok(h) if !h.trim().is_empty() => h.trim().to_string(),
        _ => crate::util::hostname(),
    }
}

/// One distinct notice of a job and how many ranks gave it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct JobNotice {
    /// The notice.
    pub notice: String,
    /// Ranks whose manifest has it.
    pub count: usize,
    /// Ranks whose manifest was read (or the world size when larger).
    pub of: usize,
    /// The ranks' notices differ in their figures: `notice` is the lowest rank's.
    pub figures_vary: bool,
    /// Ranks whose manifest was read (fewer than `of` while ranks still run).
    pub finished: usize,
}

impl JobNotice {
    /// One line for a terminal: `NOTICE [3 of 4 ranks]`.
    pub fn line(&self) -> String {
        let vary = if self.figures_vary {
            "; figures of the lowest rank"
        } else {
            ""
        };
        format!(
            "{} [{} of {} ranks{vary}]",
            self.notice, self.count, self.of
        )
    }
}

/// A notice with its figures masked: the ranks' "1254 captures" and "1009 captures"
/// notices are one notice for the job.
fn notice_shape(n: &str) -> String {
    let mut out = String::with_capacity(n.len());
    for c in n.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every rank's own manifest (`raw/*/manifest.json`) that reads, by rank (then pid).
pub fn rank_manifests(
    dir: &std::path::Path,
) -> Vec<(crate::raw::RawDir, crate::manifest::Manifest)> {
    let raws = crate::raw::list_raw_dirs(dir).unwrap_or_default();
    let mut ranked: Vec<_> = raws
        .into_iter()
        .filter(|r| r.rank.is_some())
        .filter_map(|r| {
            let m = crate::manifest::Manifest::load(&r.path).ok()?;
            Some((r, m))
        })
        .collect();
    ranked.sort_by_key(|(r, _)| (r.rank, r.pid));
    ranked
}

/// The distinct notices of the ranks' own manifests, in the order first seen by rank,
/// with how many ranks each applies to. `world` is the launcher's world size, when
/// known, for the "of N ranks" part.
pub fn job_notices(dir: &std::path::Path, world: Option<u32>) -> Vec<JobNotice> {
    notices_of(&rank_manifests(dir), world)
}

/// [`job_notices`] of manifests already read ([`rank_manifests`]).
pub fn notices_of(
    ranks: &[(crate::raw::RawDir, crate::manifest::Manifest)],
    world: Option<u32>,
) -> Vec<JobNotice> {
    let mut out: Vec<JobNotice> = Vec::new();
    let mut shapes: Vec<String> = Vec::new();
    let read = ranks.len();
    for (_, m) in ranks {
        let mut mine: Vec<(String, &String)> =
            m.notices.iter().map(|n| (notice_shape(n), n)).collect();
        mine.sort();
        mine.dedup_by(|a, b| a.0 == b.0);
        for (shape, n) in mine {
            match shapes.iter().position(|x| *x == shape) {
                Some(i) => {
                    out[i].count += 1;
                    out[i].figures_vary |= &out[i].notice != n;
                }
                None => {
                    shapes.push(shape);
                    out.push(JobNotice {
                        notice: n.clone(),
                        count: 1,
                        of: 0,
                        figures_vary: false,
                        finished: 0,
                    });
                }
            }
        }
    }
    let of = read.max(world.unwrap_or(0) as usize);
    for n in &mut out {
        n.of = of;
        n.finished = read;
    }
    out
}

/// Whether a module is an MPI library or its transport (Open MPI, MPICH, libfabric, UCX, PSM).
pub fn is_mpi_module(m: &str) -> bool {
    // Open MPI's components are mca_pml_ob1.so, mca_btl_vader.so ...; MPICH is matched
    // anywhere in the name.
    const PREFIXES: [&str; 12] = [
        "libmpi",
        "libpmpi",
        "libopen-pal",
        "libopen-rte",
        "libfabric",
        "libucp",
        "libuct",
        "libpsm",
        "mca_",
        "libmca_",
        "libpmix",
        "libucs",
    ];
    let m = m.to_ascii_lowercase();
    m.contains("mpich") || PREFIXES.iter().any(|p| m.starts_with(p))
}

/// mpi4py's extension module (`MPI.cpython-311-x86_64-linux-gnu.so`,
/// `MPI.openmpi.cpython-311-….so`).
pub fn is_mpi4py_module(module: &str) -> bool {
    let m = module.to_ascii_lowercase();
    m.contains("mpi4py") || (m.starts_with("mpi.") && m.contains(".so"))
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

    /// Each launcher's variables, as they set them.
    #[test]
    fn launchers_are_recognised() {
        let cases: &[(&[(&str, &str)], MpiContext)] = &[
            (
                &[
                    ("OMPI_COMM_WORLD_RANK", "1"),
                    ("OMPI_COMM_WORLD_SIZE", "4"),
                    ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
                    ("OMPI_MCA_orte_ess_jobid", "123"),
                ],
                MpiContext {
                    rank: Some(1),
                    world_size: Some(4),
                    job: Some("123".into()),
                    local_rank: Some(1),
                    node: None,
                },
            ),
            (
                // MPICH and Intel MPI (Hydra).
                &[
                    ("PMI_RANK", "2"),
                    ("PMI_SIZE", "8"),
                    ("MPI_LOCALRANKID", "0"),
                    ("PMI_KVSNAME", "kvs_77_0"),
                ],
                MpiContext {
                    rank: Some(2),
                    world_size: Some(8),
                    job: Some("kvs_77_0".into()),
                    local_rank: Some(0),
                    node: None,
                },
            ),
            (
                &[
                    ("PMIX_RANK", "5"),
                    ("PMIX_NAMESPACE", "prterun-x-1@1"),
                    ("PMIX_LOCAL_RANK", "1"),
                ],
                MpiContext {
                    rank: Some(5),
                    world_size: None,
                    job: Some("prterun-x-1@1".into()),
                    local_rank: Some(1),
                    node: None,
                },
            ),
            (
                &[
                    ("SLURM_PROCID", "9"),
                    ("SLURM_NTASKS", "16"),
                    ("SLURM_LOCALID", "1"),
                    ("SLURM_JOB_ID", "4242"),
                    ("SLURM_NODEID", "1"),
                ],
                MpiContext {
                    rank: Some(9),
                    world_size: Some(16),
                    job: Some("4242".into()),
                    local_rank: Some(1),
                    node: Some(1),
                },
            ),
        ];
        for (vars, want) in cases {
            let env: HashMap<&str, &str> = vars.iter().copied().collect();
            let c = MpiContext::from_lookup(|k| env.get(k).map(|s| s.to_string()));
            assert_eq!(&c, want, "{vars:?}");
        }
    }

    #[test]
    fn notices_differing_in_figures_are_one() {
        assert_eq!(
            notice_shape("python: 3.11.7, 1254 captures"),
            notice_shape("python: 3.11.7, 1009 captures")
        );
        assert_ne!(notice_shape("a 1"), notice_shape("b 1"));
    }
}
