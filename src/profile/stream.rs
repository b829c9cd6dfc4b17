//! profile.db written in pieces: a finalize of many ranks writes each batch's
//! per-thread rows (samples, counts, waits, RSS points, timeline) into the database as
//! it goes and forgets them, so its memory does not grow with the ranks. The shared
//! tables (functions, frames, stacks, processes, threads, meta) are written at the end,
//! in the same transaction, and the file is renamed into place only then.
//!
//! The timeline's buckets depend on the whole run's time range. When the ranks declare
//! theirs (`sample_times_ns` in their manifests) finalize buckets each batch's rows
//! before flushing them; otherwise the range is known only after the last rank, and
//! the rows are kept by time unit in a temporary file (unlinked, fixed-size binary
//! records) and bucketed at the end, a thread at a time.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{ProfileError, ProfileWriter, SCHEMA, sql_err, write_rows, write_tables};
use crate::private_dir::PrivateDir;

/// How time units become timeline buckets (see `finalize::TimeBuckets`): bucket =
/// min((unit - start) / width, count - 1), 0 before `start`.
#[derive(Clone, Copy, Debug)]
pub struct Bucketing {
    /// First time unit.
    pub start: u64,
    /// Units per bucket (>= 1).
    pub width: u64,
    /// Number of buckets.
    pub count: u64,
}

/// A profile.db being written: a temporary file in the results directory, renamed to
/// `profile.db` by [`PendingDb::finish`]; removed if dropped before.
pub struct PendingDb {
    dir: PrivateDir,
    tmp_name: String,
    tmp: PathBuf,
    path: PathBuf,
    ours: File,
    conn: Option<Connection>,
    /// Timeline rows by time unit, [`UNIT_ROW`] bytes each: a file, not a temporary
    /// table, because inserting them into SQLite one at a time (then reading them back)
    /// cost the serial main thread ~0.4 µs a row (docs/performance.md, "finalize, round
    /// 8"); the file's pages are the kernel's cache, so memory stays flat.
    units: BufWriter<File>,
    /// The thread of the last unit row, the threads written before it, and whether
    /// every thread's rows are together in the file (then they are bucketed a thread
    /// at a time).
    units_thread: Option<u64>,
    units_done: std::collections::HashSet<u64>,
    units_together: bool,
}

/// One timeline row by time unit: stack (0: none, else id + 1), thread id + 1, unit,
/// count, each a little-endian u64.
const UNIT_ROW: usize = 32;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProfileError + '_ {
    move |source| ProfileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl PendingDb {
    /// Create the temporary file in `dir` and open its one transaction.
    pub fn create(dir: &Path) -> Result<PendingDb, ProfileError> {
        let path = super::Profile::db_path(dir);
        let d = PrivateDir::open(dir).map_err(io(dir))?;
        let tmp_name = PrivateDir::temp_name("profile.db");
        let tmp = dir.join(&tmp_name);
        let ours = d.create_file(&tmp_name).map_err(io(&tmp))?;
        let units = d.scratch_file("timeline-units").map_err(io(&tmp))?;
        let mut db = PendingDb {
            dir: d,
            tmp_name,
            tmp,
            path,
            ours,
            conn: None,
            units: BufWriter::with_capacity(1 << 16, units),
            units_thread: None,
            units_done: Default::default(),
            units_together: true,
        };
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&db.tmp, flags).map_err(sql_err(&db.tmp))?;
        conn.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; BEGIN;")
            .and_then(|_| conn.execute_batch(SCHEMA))
            .map_err(sql_err(&db.tmp))?;
        db.conn = Some(conn);
        Ok(db)
    }

    fn conn(&self) -> &Connection {
        // Set by `create`, taken only by `finish`, which consumes self.
        self.conn.as_ref().expect("open until finish")
    }

    /// Write the per-thread rows `w` holds and drop them from `w` (its functions,
    /// frames, stacks, processes and threads stay: later rows refer to them). Rows of
    /// threads already flushed must not be added again.
    pub fn flush_rows(&mut self, w: &mut ProfileWriter) -> Result<(), ProfileError> {
        write_rows(self.conn(), &w.profile).map_err(sql_err(&self.tmp))?;
        let p = &mut w.profile;
        p.samples = Vec::new();
        p.counts = Vec::new();
        p.rss = Vec::new();
        p.timeline = Vec::new();
        p.waits = Vec::new();
        p.wakers = Vec::new();
        w.sample_ids = Default::default();
        w.count_ids = Default::default();
        w.timeline_ids = Default::default();
        w.wait_ids = Default::default();
        w.waker_ids = Default::default();
        Ok(())
    }

    /// Add timeline rows by time unit: (stack, thread, unit, count), ids as the
    /// writer's (index from 0).
    pub fn add_timeline_units(
        &mut self,
        rows: impl Iterator<Item = (Option<usize>, usize, u64, u64)>,
    ) -> Result<(), ProfileError> {
        for (stack, thread, unit, count) in rows {
            let (stack, thread) = (stack.map_or(0, |x| x as u64 + 1), thread as u64 + 1);
            if self.units_thread != Some(thread) {
                self.units_done.extend(self.units_thread);
                self.units_together &= !self.units_done.contains(&thread);
                self.units_thread = Some(thread);
            }
            let mut row = [0u8; UNIT_ROW];
            for (i, v) in [stack, thread, unit, count].into_iter().enumerate() {
                row[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
            }
            self.units.write_all(&row).map_err(io(&self.tmp))?;
        }
        Ok(())
    }

    /// Write what `w` still holds and the shared tables, bucket the timeline units
    /// with `bucketing` (none: there are none), commit, and rename the file to
    /// `profile.db`. Before the rename, the name is checked to still be the file we
    /// created (device and inode of our fd), so SQLite wrote into our file and nothing
    /// else; the rename is `renameat` in DIR's fd, which replaces whatever is at
    /// `profile.db` (a planted link included) without following it.
    pub fn finish(
        mut self,
        w: &ProfileWriter,
        bucketing: Option<Bucketing>,
    ) -> Result<PathBuf, ProfileError> {
        let conn = self.conn.take().expect("open until finish");
        write_rows(&conn, &w.profile)
            .and_then(|_| write_tables(&conn, &w.profile))
            .map_err(sql_err(&self.tmp))?;
        if let Some(b) = bucketing {
            let rows = UnitRows::rewound(&mut self.units).map_err(io(&self.tmp))?;
            match self.units_together {
                true => bucket_timeline(&conn, rows, b, &self.tmp)?,
                false => bucket_all_at_once(&conn, rows, b, &self.tmp)?,
            }
        }
        conn.execute_batch("COMMIT;").map_err(sql_err(&self.tmp))?;
        drop(conn);
        let same = crate::private_dir::identity(&self.ours).map_err(io(&self.tmp))?
            == self
                .dir
                .identity_of(&self.tmp_name)
                .map_err(io(&self.tmp))?;
        if !same {
            return Err(ProfileError::Io {
                path: self.tmp.clone(),
                source: std::io::Error::other("replaced while being written"),
            });
        }
        self.ours.sync_all().map_err(io(&self.tmp))?;
        self.dir
            .rename(&self.tmp_name, "profile.db")
            .map_err(io(&self.path))?;
        // Renamed: nothing left for Drop to remove.
        self.tmp_name.clear();
        Ok(self.path.clone())
    }
}

/// The timeline rows of the units file, read back from its start.
struct UnitRows(BufReader<File>);

impl UnitRows {
    fn rewound(units: &mut BufWriter<File>) -> std::io::Result<UnitRows> {
        units.flush()?;
        let mut f = units.get_ref().try_clone()?;
        f.rewind()?;
        Ok(UnitRows(BufReader::with_capacity(1 << 16, f)))
    }

    /// The next (stack, thread, unit, count) as stored (ids from 1, stack 0: none).
    fn next_row(&mut self) -> std::io::Result<Option<[u64; 4]>> {
        if self.0.fill_buf()?.is_empty() {
            return Ok(None);
        }
        let mut row = [0u8; UNIT_ROW];
        self.0.read_exact(&mut row)?;
        let at = |i: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&row[8 * i..8 * i + 8]);
            u64::from_le_bytes(v)
        };
        Ok(Some([at(0), at(1), at(2), at(3)]))
    }
}

/// Bucket the timeline units into `timeline`, each thread's rows together in `rows`
/// (a raw directory at a time): merged a thread at a time, in the order written, so
/// only one thread's buckets are held at once.
fn bucket_timeline(
    conn: &Connection,
    mut rows: UnitRows,
    b: Bucketing,
    path: &Path,
) -> Result<(), ProfileError> {
    let mut insert = TimelineInsert::new(conn).map_err(sql_err(path))?;
    let mut thread = None;
    let mut buckets = Buckets::new();
    while let Some([stack, t, unit, count]) = rows.next_row().map_err(io(path))? {
        if thread != Some(t) {
            if let Some(prev) = thread {
                insert
                    .all(prev, std::mem::take(&mut buckets))
                    .map_err(sql_err(path))?;
            }
            thread = Some(t);
        }
        add_unit(&mut buckets, b, stack, unit, count);
    }
    if let Some(t) = thread {
        insert.all(t, buckets).map_err(sql_err(path))?;
    }
    insert.finish().map_err(sql_err(path))
}

/// [`bucket_timeline`] of rows in any order (a thread met again after another's rows,
/// not expected): every thread's buckets held at once. (Not undone and done again: with
/// `journal_mode=OFF`, rolling back to a savepoint is undefined.)
fn bucket_all_at_once(
    conn: &Connection,
    mut rows: UnitRows,
    b: Bucketing,
    path: &Path,
) -> Result<(), ProfileError> {
    let mut by_thread = std::collections::BTreeMap::<u64, Buckets>::new();
    while let Some([stack, t, unit, count]) = rows.next_row().map_err(io(path))? {
        add_unit(by_thread.entry(t).or_default(), b, stack, unit, count);
    }
    let mut insert = TimelineInsert::new(conn).map_err(sql_err(path))?;
    for (t, buckets) in by_thread {
        insert.all(t, buckets).map_err(sql_err(path))?;
    }
    insert.finish().map_err(sql_err(path))
}

/// Buckets on their way into `timeline`, through the table's own insert (many rows a
/// statement, [`super::tables::insert_timeline`]) a few thousand rows at a time: so
/// threads of a few buckets each do not cost a statement apiece.
struct TimelineInsert<'c> {
    conn: &'c Connection,
    pending: Vec<super::TimelineRow>,
}

/// Rows held before they are inserted.
const PENDING_ROWS: usize = 8192;

impl<'c> TimelineInsert<'c> {
    fn new(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(TimelineInsert {
            conn,
            pending: Vec::with_capacity(PENDING_ROWS),
        })
    }

    /// Thread `t`'s buckets (ids as stored: from 1, stack 0 for none).
    fn all(&mut self, t: u64, buckets: Buckets) -> rusqlite::Result<()> {
        for ((stack, bucket), count) in buckets {
            self.pending.push(super::TimelineRow {
                stack: stack.checked_sub(1).map(|s| s as usize),
                thread: t.saturating_sub(1) as usize,
                // Below the bucket count (at most TIMELINE_MAX_BUCKETS).
                bucket: bucket.min(u64::from(u32::MAX)) as u32,
                count,
            });
            if self.pending.len() >= PENDING_ROWS {
                super::tables::insert_timeline(self.conn, &self.pending)?;
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// Inserts what is left.
    fn finish(self) -> rusqlite::Result<()> {
        super::tables::insert_timeline(self.conn, &self.pending)
    }
}

type Buckets = std::collections::BTreeMap<(u64, u64), u64>;

/// Adds a unit's count to its bucket (bucket = min((unit - start) / width, count - 1),
/// 0 before `start`).
fn add_unit(buckets: &mut Buckets, b: Bucketing, stack: u64, unit: u64, count: u64) {
    let bucket = (unit.saturating_sub(b.start) / b.width.max(1)).min(b.count.saturating_sub(1));
    let c = buckets.entry((stack, bucket)).or_default();
    *c = c.saturating_add(count);
}

impl Drop for PendingDb {
    fn drop(&mut self) {
        drop(self.conn.take());
        if !self.tmp_name.is_empty() {
            let _ = self.dir.remove(&self.tmp_name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline_of(
        units: &[(Option<usize>, usize, u64, u64)],
        bucketing: Bucketing,
    ) -> Vec<(Option<i64>, i64, i64, i64)> {
        let d = tempfile::tempdir().unwrap();
        let mut db = PendingDb::create(d.path()).unwrap();
        // Two calls, as two raw directories.
        let (a, b) = units.split_at(units.len() / 2);
        db.add_timeline_units(a.iter().copied()).unwrap();
        db.add_timeline_units(b.iter().copied()).unwrap();
        let path = db
            .finish(&ProfileWriter::default(), Some(bucketing))
            .unwrap();
        // Nothing but profile.db is left in the directory (the units file is unlinked).
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["profile.db"]);
        let conn = Connection::open(path).unwrap();
        let mut st = conn
            .prepare(
                "SELECT stack, thread, bucket, count FROM timeline ORDER BY thread, stack, bucket",
            )
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Units become buckets of `width` units from `start` (before it: the first; past
    /// the last: the last), added up per (stack, thread, bucket), ids from 1 in the
    /// database; a thread met again after another's rows is merged with its first rows.
    #[test]
    fn units_are_bucketed_per_thread_in_order_or_not() {
        let want = vec![
            (None, 1, 0, 1 + 4),
            (None, 1, 1, 3),
            (Some(3), 1, 0, 2),
            (Some(3), 1, 2, 7 + 1),
            (None, 2, 0, 5),
        ];
        // Thread 0's rows together, then thread 1's.
        let in_order = [
            (None, 0, 10, 1),
            (Some(2), 0, 11, 2),
            (None, 0, 12, 3),
            (None, 0, 3, 4),
            (Some(2), 0, 14, 7),
            (Some(2), 0, 99, 1),
            (None, 1, 10, 5),
        ];
        let bucketing = Bucketing {
            start: 10,
            width: 2,
            count: 3,
        };
        assert_eq!(timeline_of(&in_order, bucketing), want);
        // Thread 0 again after thread 1.
        let mut met_again = in_order;
        met_again.swap(2, 6);
        assert_eq!(timeline_of(&met_again, bucketing), want);
    }

    /// More buckets than one INSERT statement takes: 3 threads of 100 units, one
    /// sample each, in buckets of 2 units: 150 rows of count 2.
    #[test]
    fn many_buckets_are_all_inserted() {
        let units: Vec<_> = (0..3)
            .flat_map(|t| (0..100).map(move |u| (Some(t), t, 1000 + u, 1)))
            .collect();
        let bucketing = Bucketing {
            start: 1000,
            width: 2,
            count: 50,
        };
        let want: Vec<_> = (1..=3)
            .flat_map(|t| (0..50).map(move |b| (Some(t), t, b, 2)))
            .collect();
        assert!(want.len() > super::super::tables::ROWS_PER_INSERT);
        assert_eq!(timeline_of(&units, bucketing), want);
    }
}
