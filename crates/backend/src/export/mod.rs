//! Export of a user's history as JSON (the versioned format in
//! [`schema`]), Markdown, or a zip of both, and import of the JSON.
//!
//! An export is written by a task that reads rows from the database as they
//! arrive and writes them into a bounded in-memory pipe; the response body
//! reads the other end. A slow client therefore slows the query instead of
//! filling memory, and an export of 100,000 messages needs no more memory
//! than one of ten. If anything fails after the headers went out, the body
//! ends with an error, so the client sees a broken download rather than a
//! short file that looks complete.

pub mod import;
pub mod schema;

use crate::{error::Error, store::export::Row};
use async_zip::{
    base::write::{EntryStreamWriter, ZipFileWriter},
    Compression, ZipDateTime, ZipEntryBuilder,
};
use axum::body::{Body, Bytes};
use chrono::{DateTime, Utc};
use confab_core::ids::{ThreadId, UserId};
use futures::{
    io::{AsyncWrite, AsyncWriteExt},
    stream::BoxStream,
    StreamExt, TryStreamExt,
};
use serde::Serialize;
use sqlx::{pool::PoolConnection, PgConnection, Postgres};
use std::fmt::Write as _;
use tokio_util::compat::TokioAsyncWriteCompatExt;

/// Bytes gathered before a write to the pipe, and the pipe's capacity:
/// together they bound the memory one export holds.
const CHUNK: usize = 32 * 1024;
const PIPE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Markdown,
    /// `conversations.json` plus one Markdown file per thread.
    Zip,
}

impl Format {
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "json" => Ok(Format::Json),
            "markdown" | "md" => Ok(Format::Markdown),
            "zip" => Ok(Format::Zip),
            other => Err(Error::invalid(
                "invalid_format",
                Some("format"),
                format!("Unknown export format {other:?}: use json, markdown or zip."),
            )),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json; charset=utf-8",
            Format::Markdown => "text/markdown; charset=utf-8",
            Format::Zip => "application/zip",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Markdown => "md",
            Format::Zip => "zip",
        }
    }
}

/// What to export, for whom.
#[derive(Debug, Clone)]
pub struct Export {
    pub user: UserId,
    /// One thread (its title names the file), or all of them.
    pub thread: Option<(ThreadId, String)>,
    pub format: Format,
    pub owner: schema::Owner,
    pub exported_at: DateTime<Utc>,
}

impl Export {
    /// `confab-export-2026-12-01.zip`, or `confab-<title>-2026-12-01.json`
    /// for one thread. ASCII only, so the plain `filename=` parameter is
    /// enough for every browser.
    pub fn file_name(&self) -> String {
        let date = self.exported_at.format("%Y-%m-%d");
        match &self.thread {
            Some((_, title)) => {
                format!("confab-{}-{date}.{}", slug(title), self.format.extension())
            }
            None => format!("confab-export-{date}.{}", self.format.extension()),
        }
    }

    pub fn content_disposition(&self) -> String {
        format!("attachment; filename=\"{}\"", self.file_name())
    }

    /// Write the export to `out`, reading from `conn`. Returns how many
    /// messages were written (for the log and the benchmark).
    pub async fn write<W: AsyncWrite + Unpin + Send>(
        &self,
        conn: &mut PgConnection,
        out: W,
    ) -> Result<u64, Error> {
        let thread = self.thread.as_ref().map(|(id, _)| *id);
        match self.format {
            Format::Json => {
                let mut out = out;
                let n = write_json(
                    &mut crate::store::export::rows(conn, self.user, thread),
                    self,
                    &mut out,
                )
                .await?;
                out.close().await?;
                Ok(n)
            }
            Format::Markdown => {
                let mut out = out;
                let n = write_markdown(
                    &mut crate::store::export::rows(conn, self.user, thread),
                    self,
                    &mut out,
                )
                .await?;
                out.close().await?;
                Ok(n)
            }
            Format::Zip => {
                // Two passes over the history (JSON, then Markdown) read the
                // same snapshot.
                let mut tx = crate::store::export::snapshot(conn).await?;
                let n = write_zip(&mut tx, self, thread, out).await?;
                tx.commit().await?;
                Ok(n)
            }
        }
    }
}

/// A response body produced by `write`, which gets the write end of a
/// bounded pipe and a database connection of its own.
pub fn body(export: Export, mut conn: PoolConnection<Postgres>) -> Body {
    let (reader, writer) = tokio::io::duplex(PIPE);
    let task = tokio::spawn(async move {
        let started = confab_core::clock::instant();
        let result = export.write(&mut conn, writer.compat_write()).await;
        match &result {
            Ok(n) => {
                metrics::counter!("export_messages_total").increment(*n);
                tracing::info!(
                    user = %export.user, messages = n, format = ?export.format,
                    ms = started.elapsed().as_millis() as u64, "export written"
                );
            }
            // A client that went away closes the pipe; nothing to report.
            Err(Error::Infra(confab_core::error::InfraError::Io(e)))
                if e.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                tracing::info!(user = %export.user, "export abandoned by the client");
            }
            Err(e) => tracing::error!(user = %export.user, error = %e, "export failed"),
        }
        result.map(|_| ())
    });
    let data = tokio_util::io::ReaderStream::new(reader);
    // After the last byte, the writer's outcome: an error aborts the body.
    let outcome = futures::stream::once(async move {
        match task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Err(std::io::Error::other(e.to_string()))),
            Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
        }
    })
    .filter_map(futures::future::ready);
    Body::from_stream(data.chain(outcome).map_ok(Bytes::from))
}

#[derive(Serialize)]
struct Header<'a> {
    format: &'static str,
    version: u32,
    exported_at: DateTime<Utc>,
    user: &'a schema::Owner,
}

/// `value` serialised as a JSON object with its closing brace removed, so
/// more fields (written as they stream) can follow.
fn open_object(value: &impl Serialize) -> Result<Vec<u8>, Error> {
    let mut v = serde_json::to_vec(value).map_err(std::io::Error::from)?;
    debug_assert_eq!(v.last(), Some(&b'}'));
    v.pop();
    Ok(v)
}

fn thread_head(row: &Row) -> schema::ThreadHead<'_> {
    schema::ThreadHead {
        id: row.thread_id.0,
        title: &row.title,
        created_at: row.thread_created_at,
        updated_at: row.thread_updated_at,
    }
}

/// The row's message in the export schema, if the row has one.
fn message(row: Row) -> Option<schema::Message> {
    let m = row.message;
    Some(schema::Message {
        id: m.id?.0,
        seq: m.seq?,
        role: m.role?.as_str().into(),
        status: m.status?.as_str().into(),
        content: m.content?,
        created_at: m.created_at?,
        reply_to: m.reply_to.map(|r| r.0),
        current: m.current.unwrap_or(true),
        model: m.model,
        provider: m.provider,
        error: match (m.error_code, m.error_message) {
            (Some(code), Some(message)) => Some(schema::ErrorInfo { code, message }),
            _ => None,
        },
    })
}

async fn flush_if_full<W: AsyncWrite + Unpin>(buf: &mut Vec<u8>, w: &mut W) -> Result<(), Error> {
    if buf.len() >= CHUNK {
        w.write_all(buf).await?;
        buf.clear();
    }
    Ok(())
}

type Rows<'c> = BoxStream<'c, Result<Row, sqlx::Error>>;

/// The JSON document, written as rows arrive: header, then each thread's
/// fields followed by its messages, one per line.
async fn write_json<W: AsyncWrite + Unpin>(
    rows: &mut Rows<'_>,
    export: &Export,
    w: &mut W,
) -> Result<u64, Error> {
    let mut buf = open_object(&Header {
        format: schema::FORMAT,
        version: schema::VERSION,
        exported_at: export.exported_at,
        user: &export.owner,
    })?;
    buf.extend_from_slice(b",\"threads\":[");
    let mut current: Option<ThreadId> = None;
    let mut first_message = true;
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await? {
        if current != Some(row.thread_id) {
            if current.is_some() {
                buf.extend_from_slice(b"\n]},");
            }
            buf.push(b'\n');
            buf.extend(open_object(&thread_head(&row))?);
            buf.extend_from_slice(b",\"messages\":[");
            current = Some(row.thread_id);
            first_message = true;
        }
        if let Some(m) = message(row) {
            if !first_message {
                buf.push(b',');
            }
            buf.push(b'\n');
            serde_json::to_writer(&mut buf, &m).map_err(std::io::Error::from)?;
            first_message = false;
            count += 1;
        }
        flush_if_full(&mut buf, w).await?;
    }
    if current.is_some() {
        buf.extend_from_slice(b"\n]}");
    }
    buf.extend_from_slice(b"\n]}\n");
    w.write_all(&buf).await?;
    Ok(count)
}

/// All threads in one Markdown document.
async fn write_markdown<W: AsyncWrite + Unpin>(
    rows: &mut Rows<'_>,
    export: &Export,
    w: &mut W,
) -> Result<u64, Error> {
    let mut buf = String::new();
    let _ = write!(
        buf,
        "# Confab export\n\nExported {} for {} <{}>.\n",
        human_time(export.exported_at),
        export.owner.display_name,
        export.owner.email
    );
    let mut current: Option<ThreadId> = None;
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await? {
        if current != Some(row.thread_id) {
            buf.push_str("\n---\n\n");
            markdown_thread(&mut buf, &row, "##");
            current = Some(row.thread_id);
        }
        if let Some(m) = message(row) {
            markdown_message(&mut buf, &m, "###");
            count += 1;
        }
        if buf.len() >= CHUNK {
            w.write_all(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    if current.is_none() {
        buf.push_str("\nNo conversations.\n");
    }
    w.write_all(buf.as_bytes()).await?;
    Ok(count)
}

fn markdown_thread(buf: &mut String, row: &Row, level: &str) {
    let _ = write!(
        buf,
        "{level} {}\n\n*Conversation `{}`, started {}.*\n",
        one_line(&row.title),
        row.thread_id,
        human_time(row.thread_created_at),
    );
}

fn markdown_message(buf: &mut String, m: &schema::Message, level: &str) {
    let who = if m.role == "user" {
        "You".to_string()
    } else if !m.current {
        "Assistant (an earlier attempt)".to_string()
    } else {
        match (&m.model, &m.provider) {
            (Some(model), Some(provider)) => format!("Assistant ({model}, {provider})"),
            (Some(model), None) => format!("Assistant ({model})"),
            _ => "Assistant".to_string(),
        }
    };
    let _ = write!(
        buf,
        "\n{level} {who} · {}\n\n{}\n",
        human_time(m.created_at),
        m.content.trim_end()
    );
    match m.status.as_str() {
        "failed" => {
            let why = m.error.as_ref().map_or("", |e| e.message.as_str());
            let _ = writeln!(buf, "\n> **This reply failed.** {why}");
        }
        "streaming" => buf.push_str("\n> *This reply was still being written when exported.*\n"),
        "stopped" => buf.push_str("\n> *Stopped before it was finished.*\n"),
        _ => {}
    }
}

/// `conversations.json` (the whole JSON export), then one Markdown file
/// per thread under `chats/`, each entry deflated as it streams.
async fn write_zip<W: AsyncWrite + Unpin + Send>(
    conn: &mut PgConnection,
    export: &Export,
    thread: Option<ThreadId>,
    out: W,
) -> Result<u64, Error> {
    let mut zip = ZipFileWriter::new(out);
    let when = ZipDateTime::from_chrono(&export.exported_at);
    let entry = |name: String| {
        ZipEntryBuilder::new(name.into(), Compression::Deflate)
            .last_modification_date(when)
            .unix_permissions(0o644)
    };
    let dir = format!("confab-export-{}", export.exported_at.format("%Y-%m-%d"));

    let mut json = zip
        .write_entry_stream(entry(format!("{dir}/conversations.json")))
        .await
        .map_err(zip_error)?;
    let count = write_json(
        &mut crate::store::export::rows(conn, export.user, thread),
        export,
        &mut json,
    )
    .await?;
    json.close().await.map_err(zip_error)?;

    let mut rows = crate::store::export::rows(conn, export.user, thread);
    let mut current: Option<ThreadId> = None;
    let mut file: Option<EntryStreamWriter<'_, W>> = None;
    let mut n = 0usize;
    let mut buf = String::new();
    while let Some(row) = rows.try_next().await? {
        if current != Some(row.thread_id) {
            if let Some(mut f) = file.take() {
                f.write_all(buf.as_bytes()).await?;
                buf.clear();
                f.close().await.map_err(zip_error)?;
            }
            n += 1;
            let name = format!("{dir}/chats/{n:04}-{}.md", slug(&row.title));
            file = Some(
                zip.write_entry_stream(entry(name))
                    .await
                    .map_err(zip_error)?,
            );
            markdown_thread(&mut buf, &row, "#");
            current = Some(row.thread_id);
        }
        if let Some(m) = message(row) {
            markdown_message(&mut buf, &m, "##");
        }
        if buf.len() >= CHUNK {
            if let Some(f) = file.as_mut() {
                f.write_all(buf.as_bytes()).await?;
            }
            buf.clear();
        }
    }
    if let Some(mut f) = file.take() {
        f.write_all(buf.as_bytes()).await?;
        f.close().await.map_err(zip_error)?;
    }
    drop(rows);
    let mut out = zip.close().await.map_err(zip_error)?;
    out.close().await?;
    Ok(count)
}

fn zip_error(e: async_zip::error::ZipError) -> Error {
    match e {
        async_zip::error::ZipError::UpstreamReadError(io) => io.into(),
        other => std::io::Error::other(other.to_string()).into(),
    }
}

fn human_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A file-name-safe form of a title: lowercase ASCII letters and digits
/// joined by dashes, at most 40 characters, `chat` if nothing is left.
pub fn slug(title: &str) -> String {
    let mut s = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
        if s.len() >= 40 {
            break;
        }
    }
    let s = s.trim_end_matches('-');
    if s.is_empty() {
        "chat".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_safe_file_names() {
        assert_eq!(slug("Hello, World!"), "hello-world");
        assert_eq!(slug("  ../../etc/passwd"), "etc-passwd");
        assert_eq!(slug("日本語"), "chat");
        assert_eq!(slug("\"; rm -rf /"), "rm-rf");
        assert!(slug(&"a".repeat(100)).len() <= 40);
    }

    #[test]
    fn formats_parse_and_refuse_unknown_ones() {
        assert_eq!(Format::parse("json").unwrap(), Format::Json);
        assert_eq!(Format::parse("markdown").unwrap(), Format::Markdown);
        assert_eq!(Format::parse("zip").unwrap(), Format::Zip);
        let e = Format::parse("pdf").unwrap_err();
        assert_eq!(e.code(), "invalid_format");
    }
}
