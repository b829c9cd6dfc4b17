//! The tables of profile.db as Rust rows: one declaration per table names its columns
//! (as the fields of its row type, in column order) and how each field is stored, and
//! from it come the INSERT, the SELECT and the mapping of a row both ways.
//!
//! The CREATE TABLE statements stay the text of [`super::SCHEMA`]: SQLite keeps that
//! text in the file and `.schema` prints it, so it stays as older profile.db files have
//! it; a test checks that every declaration here names the columns of its table in
//! SCHEMA, in order.

use rusqlite::types::{FromSql, ToSql, ToSqlOutput};
use rusqlite::{Connection, Row, params};

use super::{
    CountRow, EventRow, Frame, FrameKind, Function, Process, ProcessRole, Profile, RssPoint,
    SampleRow, StackNode, Thread, TimelineRow, WaitClass, WaitKey, WaitRow, WakerRow,
};

/// How a field of type `T` is stored in its column and read back.
pub(super) trait Column<T> {
    /// The value to store.
    fn put(v: &T) -> rusqlite::Result<ToSqlOutput<'_>>;
    /// The field, from column `i` of `r`.
    fn get(r: &Row<'_>, i: usize) -> rusqlite::Result<T>;
}

/// Stored as it is, by rusqlite's conversions (NULL reads only into an `Option`).
pub(super) struct Plain;

impl<T: ToSql + FromSql> Column<T> for Plain {
    fn put(v: &T) -> rusqlite::Result<ToSqlOutput<'_>> {
        v.to_sql()
    }
    fn get(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
        r.get(i)
    }
}

/// Text where NULL reads as "".
pub(super) struct OrEmpty;

impl Column<String> for OrEmpty {
    fn put(v: &String) -> rusqlite::Result<ToSqlOutput<'_>> {
        v.to_sql()
    }
    fn get(r: &Row<'_>, i: usize) -> rusqlite::Result<String> {
        Ok(r.get::<_, Option<String>>(i)?.unwrap_or_default())
    }
}

/// An index into another table, stored as that row's id (index + 1).
pub(super) struct Id;

impl Column<usize> for Id {
    fn put(v: &usize) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(*v as i64 + 1))
    }
    fn get(r: &Row<'_>, i: usize) -> rusqlite::Result<usize> {
        Ok(idx(r.get(i)?))
    }
}

/// Rows inserted by one statement, and SQLite's bound on a statement's parameters
/// (`SQLITE_MAX_VARIABLE_NUMBER`, 32,766 since 3.32).
pub(super) const ROWS_PER_INSERT: usize = 128;
const MAX_PARAMETERS: usize = 32_766;

/// An optional index into another table (NULL: none).
pub(super) struct OptId;

impl Column<Option<usize>> for OptId {
    fn put(v: &Option<usize>) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Owned(v.map(|x| x as i64 + 1).into()))
    }
    fn get(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<usize>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(idx))
    }
}

/// A count or a time in ns: capped at i64::MAX when written, negatives read as 0.
pub(super) struct Count;

impl Column<u64> for Count {
    fn put(v: &u64) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from((*v).min(i64::MAX as u64) as i64))
    }
    fn get(r: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
        Ok(r.get::<_, i64>(i)?.max(0) as u64)
    }
}

/// A timeline bucket number, read clamped into u32.
pub(super) struct Bucket;

impl Column<u32> for Bucket {
    fn put(v: &u32) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(*v))
    }
    fn get(r: &Row<'_>, i: usize) -> rusqlite::Result<u32> {
        Ok(r.get::<_, i64>(i)?.clamp(0, u32::MAX as i64) as u32)
    }
}

/// An enum stored as its name.
pub(super) trait StoredName: Copy {
    /// NULL reads as `parse("")` (a column older files lack) instead of failing.
    const NULL_IS_EMPTY: bool;
    /// The stored name.
    fn name(self) -> &'static str;
    /// The value of a stored name; an unknown name reads as a catch-all.
    fn parse(s: &str) -> Self;
}

/// [`StoredName`] by the enum's own `as_str` and `parse`.
macro_rules! stored_by_name {
    ($($T:ident, null is empty: $null:literal;)+) => {$(
        impl StoredName for $T {
            const NULL_IS_EMPTY: bool = $null;
            fn name(self) -> &'static str {
                self.as_str()
            }
            fn parse(s: &str) -> Self {
                $T::parse(s)
            }
        }
    )+};
}

stored_by_name! {
    FrameKind, null is empty: false;
    WaitClass, null is empty: false;
    // Profiles written before launcher folding have no role: all program.
    ProcessRole, null is empty: true;
}

/// An enum stored by [`StoredName`].
pub(super) struct Named;

impl<T: StoredName> Column<T> for Named {
    fn put(v: &T) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(v.name()))
    }
    fn get(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
        let name: Option<String> = match T::NULL_IS_EMPTY {
            true => r.get(i)?,
            false => Some(r.get(i)?),
        };
        Ok(T::parse(name.as_deref().unwrap_or("")))
    }
}

fn idx(v: i64) -> usize {
    // Ids are written as index + 1 by ProfileWriter.
    (v.max(1) - 1) as usize
}

/// Columns that older profiles lack: read as NULL there.
const LATE_COLUMNS: [(&str, &str); 1] = [("processes", "role")];

/// One table of profile.db and the row type it holds.
pub(super) struct Table<R: 'static> {
    name: &'static str,
    /// The stored columns, named as the fields of `R`, in SCHEMA's order.
    columns: &'static [&'static str],
    /// The rows have a first column `id INTEGER PRIMARY KEY`: index + 1, read by it.
    with_id: bool,
    /// Column to read the rows in order of, besides `id` ("" for none).
    order_by: &'static str,
    /// Older profiles lack the table: it reads as no rows there.
    may_be_absent: bool,
    put: for<'a> fn(&'a R, &mut Vec<ToSqlOutput<'a>>) -> rusqlite::Result<()>,
    get: fn(&Row<'_>) -> rusqlite::Result<R>,
}

/// A [`Table`]: `table!(NAME of ROW [by id | by COLUMN | , may be absent]; FIELD: HOW, ...)`.
/// `by id`: the rows have an id column first (index + 1) and read in its order; `by
/// COLUMN`: they read in that column's order; `may be absent`: older profiles lack the
/// table. The fields are the columns after the id, in order; HOW is a [`Column`]. The
/// first field may be a struct of columns, `FIELD: TYPE { FIELD: HOW, ... }`: its
/// fields are the first columns.
macro_rules! table {
    ($name:ident of $Row:ident by id; $($cols:tt)+) => {
        table!(@ $name, $Row, true, "", false; $($cols)+)
    };
    ($name:ident of $Row:ident by $order:ident; $($cols:tt)+) => {
        table!(@ $name, $Row, false, stringify!($order), false; $($cols)+)
    };
    ($name:ident of $Row:ident, may be absent; $($cols:tt)+) => {
        table!(@ $name, $Row, false, "", true; $($cols)+)
    };
    ($name:ident of $Row:ident; $($cols:tt)+) => {
        table!(@ $name, $Row, false, "", false; $($cols)+)
    };
    (@ $name:ident, $Row:ident, $with_id:literal, $order:expr, $absent:literal;
     $key:ident: $Key:ident { $($kf:ident: $khow:ty),+ $(,)? }, $($field:ident: $how:ty),+ $(,)?) => {
        table!(@@ $name, $Row, $with_id, $order, $absent;
            [$key: $Key { $($kf: $khow),+ }] $($field: $how),+)
    };
    (@ $name:ident, $Row:ident, $with_id:literal, $order:expr, $absent:literal;
     $($field:ident: $how:ty),+ $(,)?) => {
        table!(@@ $name, $Row, $with_id, $order, $absent; $($field: $how),+)
    };
    (@@ $name:ident, $Row:ident, $with_id:literal, $order:expr, $absent:literal;
     $([$key:ident: $Key:ident { $($kf:ident: $khow:ty),+ }])? $($field:ident: $how:ty),+) => {
        Table::<$Row> {
            name: stringify!($name),
            columns: &[$($(stringify!($kf),)+)? $(stringify!($field)),+],
            with_id: $with_id,
            order_by: $order,
            may_be_absent: $absent,
            put: |row, out| {
                $($(out.push(<$khow as Column<_>>::put(&row.$key.$kf)?);)+)?
                $(out.push(<$how as Column<_>>::put(&row.$field)?);)+
                Ok(())
            },
            get: |r| {
                let mut i = 0;
                let mut next = || {
                    i += 1;
                    i - 1
                };
                // Fields are read in the order written: the key's columns first.
                Ok($Row {
                    $($key: $Key { $($kf: <$khow as Column<_>>::get(r, next())?),+ },)?
                    $($field: <$how as Column<_>>::get(r, next())?),+
                })
            },
        }
    };
}

/// A frame with its `inlined` flag, which [`Profile`] keeps apart.
struct FrameRow {
    function: usize,
    file: Option<String>,
    line: Option<u32>,
    inlined: bool,
}

#[rustfmt::skip]
mod declared {
    use super::*;
    pub(super) const EVENTS: Table<EventRow> = table!(events of EventRow by id;
        name: Plain, requested: OrEmpty, note: OrEmpty);
    pub(super) const PROCESSES: Table<Process> = table!(processes of Process by id;
        host: OrEmpty, rank: Plain, pid: Plain, command: OrEmpty, raw_dir: OrEmpty, role: Named);
    pub(super) const THREADS: Table<Thread> = table!(threads of Thread by id;
        process: Id, tid: Plain, name: OrEmpty);
    pub(super) const FUNCTIONS: Table<Function> = table!(functions of Function by id;
        name: Plain, module: Plain, file: Plain, start_line: Plain, kind: Named);
    pub(super) const FRAMES: Table<FrameRow> = table!(frames of FrameRow by id;
        function: Id, file: Plain, line: Plain, inlined: Plain);
    pub(super) const STACKS: Table<StackNode> = table!(stacks of StackNode by id;
        parent: OptId, frame: Id);
    pub(super) const SAMPLES: Table<SampleRow> = table!(samples of SampleRow;
        stack: OptId, thread: Id, event: Id, count: Count, value: Count);
    pub(super) const RSS: Table<RssPoint> = table!(rss of RssPoint by time_ns;
        process: Id, time_ns: Count, rss_bytes: Count);
    pub(super) const COUNTS: Table<CountRow> = table!(counts of CountRow, may be absent;
        stack: OptId, thread: Id, event: Id, value: Plain);
    pub(super) const TIMELINE: Table<TimelineRow> = table!(timeline of TimelineRow, may be absent;
        stack: OptId, thread: Id, bucket: Bucket, count: Count);
    pub(super) const WAITS: Table<WaitRow> = table!(waits of WaitRow, may be absent;
        key: WaitKey { stack: OptId, thread: Id, class: Named, object: Plain },
        count: Count, wait_ns: Count, max_ns: Count);
    pub(super) const WAKERS: Table<WakerRow> = table!(wakers of WakerRow, may be absent;
        key: WaitKey { stack: OptId, thread: Id, class: Named, object: Plain },
        waker: OptId, count: Count, wait_ns: Count);
}
use declared::*;

impl<R> Table<R> {
    /// Insert `rows` (the rows of an id table: all of them, in order), up to
    /// [`ROWS_PER_INSERT`] a statement: one statement per row (bind, step, reset) made
    /// the batches' writes a fifth slower (256 ranks: 0.113 against 0.096 s;
    /// docs/performance.md, "finalize, round 11").
    fn insert<'a>(
        &self,
        conn: &Connection,
        rows: impl IntoIterator<Item = &'a R>,
    ) -> rusqlite::Result<()>
    where
        R: 'a,
    {
        let n = self.columns.len() + usize::from(self.with_id);
        let per_statement = ROWS_PER_INSERT.min(MAX_PARAMETERS / n.max(1)).max(1);
        let sql = |k: usize| {
            let row = format!("({})", vec!["?"; n].join(", "));
            format!(
                "INSERT INTO {} VALUES {}",
                self.name,
                vec![row; k].join(", ")
            )
        };
        let mut many = None;
        let mut values = Vec::with_capacity(n * per_statement);
        let mut pending = 0;
        for (i, row) in rows.into_iter().enumerate() {
            if self.with_id {
                values.push(ToSqlOutput::from(i as i64 + 1));
            }
            (self.put)(row, &mut values)?;
            pending += 1;
            if pending == per_statement {
                if many.is_none() {
                    // Cached: the batches of a finalize insert into each table again
                    // and again.
                    many = Some(conn.prepare_cached(&sql(per_statement))?);
                }
                if let Some(st) = many.as_mut() {
                    st.execute(rusqlite::params_from_iter(&values))?;
                }
                values.clear();
                pending = 0;
            }
        }
        if pending > 0 {
            conn.prepare(&sql(pending))?
                .execute(rusqlite::params_from_iter(&values))?;
        }
        Ok(())
    }

    /// Every row of the table (none where an older profile lacks it).
    fn read(&self, conn: &Connection) -> rusqlite::Result<Vec<R>> {
        if self.may_be_absent && !has_table(conn, self.name)? {
            return Ok(Vec::new());
        }
        let mut columns = Vec::with_capacity(self.columns.len());
        for &c in self.columns {
            let late = LATE_COLUMNS.contains(&(self.name, c));
            columns.push(match late && !has_column(conn, self.name, c)? {
                true => "NULL",
                false => c,
            });
        }
        let order = match (self.with_id, self.order_by) {
            (true, _) => " ORDER BY id",
            (false, "") => "",
            (false, _) => &format!(" ORDER BY {}", self.order_by),
        };
        let sql = format!("SELECT {} FROM {}{order}", columns.join(", "), self.name);
        conn.prepare(&sql)?.query_map([], self.get)?.collect()
    }
}

/// Whether the profile has this table (older profiles lack the newer ones).
fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    let sql = "SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?1";
    let n: i64 = conn.query_row(sql, [name], |r| r.get(0))?;
    Ok(n > 0)
}

/// Whether `table` has `column` (older profiles lack the newer ones).
fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let sql = "SELECT count(*) FROM pragma_table_info(?1) WHERE name=?2";
    let n: i64 = conn.query_row(sql, [table, column], |r| r.get(0))?;
    Ok(n > 0)
}

/// Read a whole profile.
pub(super) fn read(conn: &Connection) -> rusqlite::Result<Profile> {
    let mut p = Profile::default();
    let mut st = conn.prepare("SELECT key, value FROM meta")?;
    let meta = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    p.meta = meta.collect::<rusqlite::Result<_>>()?;
    p.events = EVENTS.read(conn)?;
    p.processes = PROCESSES.read(conn)?;
    p.threads = THREADS.read(conn)?;
    p.functions = FUNCTIONS.read(conn)?;
    (p.frames, p.frame_inlined) = FRAMES
        .read(conn)?
        .into_iter()
        .map(|f| {
            let frame = Frame {
                function: f.function,
                file: f.file,
                line: f.line,
            };
            (frame, f.inlined)
        })
        .unzip();
    p.stacks = STACKS.read(conn)?;
    p.samples = SAMPLES.read(conn)?;
    p.rss = RSS.read(conn)?;
    p.counts = COUNTS.read(conn)?;
    p.timeline = TIMELINE.read(conn)?;
    p.waits = WAITS.read(conn)?;
    p.wakers = WAKERS.read(conn)?;
    Ok(p)
}

/// The tables every rank shares (meta, events, processes, threads, functions, frames,
/// stacks), written once at the end.
pub(super) fn write_tables(tx: &Connection, p: &Profile) -> rusqlite::Result<()> {
    let mut st = tx.prepare("INSERT INTO meta VALUES (?1, ?2)")?;
    let mut keys: Vec<_> = p.meta.iter().collect();
    keys.sort();
    for (k, v) in keys {
        st.execute(params![k, v])?;
    }
    EVENTS.insert(tx, &p.events)?;
    PROCESSES.insert(tx, &p.processes)?;
    THREADS.insert(tx, &p.threads)?;
    FUNCTIONS.insert(tx, &p.functions)?;
    let frames: Vec<FrameRow> = (p.frames.iter().enumerate())
        .map(|(i, f)| FrameRow {
            function: f.function,
            file: f.file.clone(),
            line: f.line,
            inlined: p.frame_inlined.get(i).copied().unwrap_or(false),
        })
        .collect();
    FRAMES.insert(tx, &frames)?;
    STACKS.insert(tx, &p.stacks)
}

/// Insert timeline rows (the streamed finalize's buckets, `stream.rs`).
pub(super) fn insert_timeline(conn: &Connection, rows: &[TimelineRow]) -> rusqlite::Result<()> {
    TIMELINE.insert(conn, rows)
}

/// The per-thread rows (samples, rss, counts, timeline, waits, wakers), which a
/// streaming finalize writes rank by rank.
pub(super) fn write_rows(tx: &Connection, p: &Profile) -> rusqlite::Result<()> {
    SAMPLES.insert(tx, &p.samples)?;
    RSS.insert(tx, &p.rss)?;
    COUNTS.insert(tx, &p.counts)?;
    TIMELINE.insert(tx, &p.timeline)?;
    WAITS.insert(tx, &p.waits)?;
    WAKERS.insert(tx, &p.wakers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every declaration names its table's columns of SCHEMA, in order.
    #[test]
    fn declarations_match_the_schema() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::SCHEMA).unwrap();
        let columns = |table: &str| -> Vec<String> {
            let sql = "SELECT name FROM pragma_table_info(?1) ORDER BY cid";
            let mut st = conn.prepare(sql).unwrap();
            let names = st.query_map([table], |r| r.get(0)).unwrap();
            names.collect::<rusqlite::Result<_>>().unwrap()
        };
        let check = |name: &str, declared: &[&str], with_id: bool| {
            let mut want: Vec<&str> = declared.to_vec();
            if with_id {
                want.insert(0, "id");
            }
            assert_eq!(columns(name), want, "{name}");
        };
        macro_rules! check_all {
            ($($table:ident),+) => {
                $(check($table.name, $table.columns, $table.with_id);)+
            };
        }
        check_all!(
            EVENTS, PROCESSES, THREADS, FUNCTIONS, FRAMES, STACKS, SAMPLES, RSS, COUNTS, TIMELINE,
            WAITS, WAKERS
        );
        let mut st = conn
            .prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
            .unwrap();
        let tables: Vec<String> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            tables.len(),
            13,
            "meta and the 12 declared tables: {tables:?}"
        );
    }
}
