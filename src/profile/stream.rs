//! profile.db written in pieces: a finalize of many ranks writes each batch's
//! per-thread rows (samples, counts, waits, RSS points, timeline) into the database as
//! it goes and forgets them, so its memory does not grow with the ranks. The shared
//! tables (functions, frames, stacks, processes, threads, meta) are written at the end,
//! in the same transaction, and the file is renamed into place only then.
//!
//! The timeline's buckets depend on the whole run's time range, known only after the
//! last rank: its rows are kept in a temporary table by time unit and bucketed at the
//! end, a thread at a time.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

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
}

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
        let mut db = PendingDb {
            dir: d,
            tmp_name,
            tmp,
            path,
            ours,
            conn: None,
        };
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&db.tmp, flags).map_err(sql_err(&db.tmp))?;
        conn.execute_batch(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; BEGIN;
             CREATE TEMP TABLE timeline_units(stack INTEGER, thread INTEGER, unit INTEGER,
                                              count INTEGER);",
        )
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
        let mut st = self
            .conn()
            .prepare_cached("INSERT INTO temp.timeline_units VALUES (?1, ?2, ?3, ?4)")
            .map_err(sql_err(&self.tmp))?;
        for (stack, thread, unit, count) in rows {
            st.execute(params![
                stack.map(|x| x as i64 + 1),
                thread as i64 + 1,
                unit.min(i64::MAX as u64) as i64,
                count.min(i64::MAX as u64) as i64
            ])
            .map_err(sql_err(&self.tmp))?;
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
        (|| {
            write_rows(&conn, &w.profile)?;
            write_tables(&conn, &w.profile)?;
            if let Some(b) = bucketing {
                bucket_timeline(&conn, b)?;
            }
            conn.execute_batch("DROP TABLE temp.timeline_units; COMMIT;")
        })()
        .map_err(sql_err(&self.tmp))?;
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

/// Bucket the timeline units into `timeline`. Each thread's units were added together
/// (a raw directory at a time), so they are merged a thread at a time, in the order
/// written, without sorting the whole table (a GROUP BY over it was most of the serial
/// end of a finalize of many ranks). A thread met again after its turn (not expected)
/// undoes this and takes the GROUP BY.
fn bucket_timeline(conn: &Connection, b: Bucketing) -> rusqlite::Result<()> {
    let start = b.start.min(i64::MAX as u64) as i64;
    let width = b.width.clamp(1, i64::MAX as u64) as i64;
    let last = b.count.saturating_sub(1).min(i64::MAX as u64) as i64;
    conn.execute_batch("SAVEPOINT bucketing")?;
    let merged = (|| -> rusqlite::Result<bool> {
        let mut insert = conn.prepare("INSERT INTO timeline VALUES (?1, ?2, ?3, ?4)")?;
        let mut scan =
            conn.prepare("SELECT stack, thread, unit, count FROM temp.timeline_units")?;
        let mut rows = scan.query([])?;
        let mut done = std::collections::HashSet::new();
        let mut thread = None;
        let mut buckets = Buckets::new();
        type Buckets = std::collections::BTreeMap<(Option<i64>, i64), i64>;
        let mut flush = |t: i64, buckets: &mut Buckets| -> rusqlite::Result<()> {
            for ((stack, bucket), count) in std::mem::take(buckets) {
                insert.execute(params![stack, t, bucket, count])?;
            }
            Ok(())
        };
        while let Some(r) = rows.next()? {
            let (stack, t, unit, count): (Option<i64>, i64, i64, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            if thread != Some(t) {
                if let Some(prev) = thread {
                    flush(prev, &mut buckets)?;
                    done.insert(prev);
                }
                if done.contains(&t) {
                    return Ok(false);
                }
                thread = Some(t);
            }
            let bucket = (unit.saturating_sub(start).max(0) / width).min(last);
            let c = buckets.entry((stack, bucket)).or_default();
            *c = c.saturating_add(count);
        }
        if let Some(t) = thread {
            flush(t, &mut buckets)?;
        }
        Ok(true)
    })()?;
    if !merged {
        conn.execute_batch("ROLLBACK TO bucketing")?;
        conn.execute(
            "INSERT INTO timeline
             SELECT stack, thread, bucket, SUM(count) FROM (
               SELECT stack, thread, MIN(MAX(unit - ?1, 0) / ?2, ?3) AS bucket, count
               FROM temp.timeline_units)
             GROUP BY stack, thread, bucket",
            params![start, width, last],
        )?;
    }
    conn.execute_batch("RELEASE bucketing")
}

impl Drop for PendingDb {
    fn drop(&mut self) {
        drop(self.conn.take());
        if !self.tmp_name.is_empty() {
            let _ = self.dir.remove(&self.tmp_name);
        }
    }
}
