//! Reading a store that was edited outside mfactl or damaged: a value of a type mfactl never
//! writes, text that is not UTF-8, a time no clock gives, a missing row. Each read failure is
//! rewritten to name the table, the row and the column and to show what the cell holds, in place
//! of rusqlite's "Invalid column type Text at index: 3". The happy path costs nothing: rows are
//! named only once a read has failed.

use crate::model::Timestamp;
use rusqlite::types::{Type, ValueRef};
use rusqlite::Row;
use std::fmt;

/// A stored value or row mfactl cannot read, already described for people: the table and row,
/// then what is wrong. Travels inside a `rusqlite::Error` until [`super::map_err`] unwraps it.
#[derive(Debug)]
pub(crate) struct Damaged(pub String);

impl fmt::Display for Damaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Damaged {}

/// The smallest and largest times mfactl writes: years 0000 to 9999, what RFC 3339 can spell.
const FIRST_TIME: i64 = -62_167_219_200;
const LAST_TIME: i64 = 253_402_300_799;

/// `what` as a read error that [`super::map_err`] reports as a damaged store.
pub(crate) fn damaged(what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(usize::MAX, Type::Null, Box::new(Damaged(what)))
}

/// The description inside an error made by [`damaged`] or [`name_row`], if it is one.
pub(crate) fn description(e: &rusqlite::Error) -> Option<&str> {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, inner) => {
            inner.downcast_ref::<Damaged>().map(|d| d.0.as_str())
        }
        _ => None,
    }
}

/// Rewrites a failed read of a value of row `r` to name the row (`row` says which, e.g.
/// "users, user `alice@contoso.example`"), the column and what it holds. Other errors (I/O,
/// SQL) pass unchanged.
pub(crate) fn name_row(
    e: rusqlite::Error,
    r: &Row<'_>,
    row: &dyn Fn(&Row<'_>) -> String,
) -> rusqlite::Error {
    if description(&e).is_some() {
        return e;
    }
    let col = match &e {
        rusqlite::Error::InvalidColumnType(i, ..)
        | rusqlite::Error::FromSqlConversionFailure(i, ..)
        | rusqlite::Error::IntegralValueOutOfRange(i, _) => *i,
        _ => return e,
    };
    let column = r
        .as_ref()
        .column_name(col)
        .map(|c| format!("column `{c}`"))
        .unwrap_or_else(|_| "a column".to_string());
    let holds = r
        .get_ref(col)
        .map(describe)
        .unwrap_or_else(|_| "a value".to_string());
    damaged(format!(
        "{}: {column} holds {holds}, which mfactl never writes there",
        row(r)
    ))
}

/// A cell's value as a message shows it: its type and, shortened and escaped, its content.
pub(crate) fn describe(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".to_string(),
        ValueRef::Integer(n) => format!("the integer {n}"),
        ValueRef::Real(x) => format!("the real number {x:?}"),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => format!("the text `{}`", shown(s)),
            Err(_) => format!(
                "text that is not UTF-8 (`{}`)",
                shown(&String::from_utf8_lossy(t))
            ),
        },
        ValueRef::Blob(b) => format!("a blob of {} bytes", b.len()),
    }
}

/// A cell's value as a row's name: its text, shortened and escaped.
pub(crate) fn cell(r: &Row<'_>, i: usize) -> String {
    match r.get_ref(i) {
        Ok(ValueRef::Text(t)) => format!("`{}`", shown(&String::from_utf8_lossy(t))),
        Ok(ValueRef::Integer(n)) => n.to_string(),
        Ok(v) => format!("({})", describe(v)),
        Err(_) => "(unreadable)".to_string(),
    }
}

/// At most 60 characters of `s`, escaped so that it cannot steer a terminal.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    crate::util::escape_text(&out).into_owned()
}

/// Column `i` as text, refused (as a read error of that column) unless it is UTF-8 text.
pub(crate) fn text<'r>(r: &'r Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    match r.get_ref(i)? {
        ValueRef::Text(t) => std::str::from_utf8(t)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e))),
        other => Err(rusqlite::Error::InvalidColumnType(
            i,
            r.as_ref().column_name(i).unwrap_or("?").to_string(),
            other.data_type(),
        )),
    }
}

/// Column `i` as a time: an integer within the years 0000 to 9999.
pub(crate) fn time(r: &Row<'_>, i: usize) -> rusqlite::Result<Timestamp> {
    let n: i64 = r.get(i)?;
    if !(FIRST_TIME..=LAST_TIME).contains(&n) {
        return Err(rusqlite::Error::IntegralValueOutOfRange(i, n));
    }
    Ok(Timestamp::from_unix(n))
}

/// Column `i` as text whatever it holds, as the audit chain hashes it: a record edited to
/// another type still lists (and shows as edited), rather than hiding the rest of the log.
pub(crate) fn lossy<'r>(r: &'r Row<'_>, i: usize) -> rusqlite::Result<std::borrow::Cow<'r, str>> {
    Ok(match r.get_ref(i)? {
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t),
        ValueRef::Integer(n) => n.to_string().into(),
        ValueRef::Real(x) => x.to_string().into(),
        ValueRef::Null => "".into(),
    })
}
