//! Workspace files in and out without a tool:
//! `PUT|GET /v1/sessions/{id}/files/{*path}` (one file, the raw bytes as the body) and
//! `PUT|GET /v1/sessions/{id}/workspace.tar` (the whole workspace). Bodies are streamed both
//! ways; uploads are charged to the session's disk quota as they are written.

use crate::orchestrator::{FilesError, Transferred, Workspace, WorkspacePath};
use crate::server::App;
use crate::server::api_doc::errors;
use crate::server::auth::Authed;
use crate::server::problem::{ErrorCode, Problem};
use crate::vocabulary::EventName;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

impl From<FilesError> for Problem {
    fn from(error: FilesError) -> Self {
        let detail = error.to_string();
        match error {
            FilesError::Session(error) => error.into(),
            FilesError::InvalidPath(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidPath,
                detail,
            ),
            FilesError::NotFound(_) => {
                Problem::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, detail)
            }
            FilesError::Conflict(_) => {
                Problem::new(StatusCode::CONFLICT, ErrorCode::Conflict, detail)
            }
            FilesError::Quota(exceeded) => Problem::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::QuotaExceeded,
                detail,
            )
            .with(json!({ "used_bytes": exceeded.used, "quota_bytes": exceeded.limit })),
            FilesError::InvalidArchive(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidArchive,
                detail,
            ),
            FilesError::Body(_) => Problem::invalid(detail),
            FilesError::Io(_) => Problem::internal(detail),
        }
    }
}

/// The caller's open session's workspace (its owner only, as every session route).
async fn workspace(
    app: &Arc<App>,
    caller: crate::orchestrator::Caller,
    id: String,
) -> Result<Workspace, Problem> {
    let orchestrator = app.orchestrator.clone();
    tokio::task::spawn_blocking(move || orchestrator.workspace(&caller, &id))
        .await
        .map_err(|e| Problem::internal(format!("the request's work failed: {e}")))?
        .map_err(Problem::from)
}

fn parse_path(raw: &str) -> Result<WorkspacePath, FilesError> {
    WorkspacePath::parse(std::path::Path::new(raw))?
        .ok_or_else(|| FilesError::InvalidPath("the path names the workspace itself".into()))
}

/// The refusal of a body whose announced length cannot fit what the quota has left, given
/// before any of it is read.
fn refuse_announced(headers: &HeaderMap, workspace: &Workspace) -> Option<Problem> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let disk = workspace.disk();
    let left = disk.quota_bytes.saturating_sub(disk.used_bytes);
    match announced {
        Some(length) if length > left => Some(
            Problem::new(
            StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::QuotaExceeded,
            format!(
                "the upload ({length} bytes) does not fit the session's disk quota ({left} of {} bytes left)",
                disk.quota_bytes
            ),
        )
        .with(json!({ "used_bytes": disk.used_bytes, "quota_bytes": disk.quota_bytes })),
        ),
        _ => None,
    }
}

/// The request body as a blocking reader, for the work done off the async workers.
fn body_reader(
    body: Body,
) -> SyncIoBridge<
    StreamReader<impl futures_util::Stream<Item = std::io::Result<Bytes>> + Unpin, Bytes>,
> {
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    SyncIoBridge::new(StreamReader::new(stream))
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FilesError> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Problem::internal(format!("the request's work failed: {e}")))?
        .map_err(Problem::from)
}

/// Upload one workspace file
///
/// The body is the file's bytes; parent directories are made. It is charged to the session's
/// disk quota (shared with its tasks) as it is written, written aside and renamed into place:
/// an upload that does not fit is refused (507 `quota_exceeded`) and leaves nothing. Recorded
/// as `file.uploaded` (`path`, `size`, `replaced`). The session's owner only; a closed
/// session's workspace was deleted with it (409).
#[utoipa::path(put, path = "/v1/sessions/{id}/files/{*path}", operation_id = "putFile", tag = "files",
    params(FilePath),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The file's bytes (any content type)."),
    responses((status = 201, description = "A new file.", body = Transferred),
        (status = 200, description = "Replaced the file of that name.", body = Transferred),
        errors::NotFound, errors::Conflict, errors::UnprocessableEntity,
        errors::InsufficientStorage))]
pub async fn put_file(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path((id, raw)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let path = parse_path(&raw)?;
    let workspace = Arc::new(workspace(&app, caller, id).await?);
    if let Some(refused) = refuse_announced(&headers, &workspace) {
        return Err(refused);
    }
    let mut reader = body_reader(body);
    let stored = {
        let workspace = workspace.clone();
        run_blocking(move || workspace.put_file(&path, &mut reader)).await?
    };
    app.orchestrator
        .record_transfer(&workspace, EventName::FileUploaded, &stored);
    let status = if stored.replaced == Some(true) {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(stored)).into_response())
}

/// Download one workspace file
///
/// The file's bytes, streamed. Recorded as `file.downloaded` (`path`, `size`). Paths through a
/// symbolic link are refused (422 `invalid_path`); a directory is a 409.
#[utoipa::path(get, path = "/v1/sessions/{id}/files/{*path}", operation_id = "getFile", tag = "files",
    params(FilePath),
    responses((status = 200, description = "The file.", content_type = "application/octet-stream", body = Vec<u8>),
        errors::NotFound, errors::Conflict, errors::UnprocessableEntity))]
pub async fn get_file(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path((id, raw)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let path = parse_path(&raw)?;
    let workspace = Arc::new(workspace(&app, caller, id).await?);
    let shown = path.display();
    let (file, size) = {
        let workspace = workspace.clone();
        run_blocking(move || workspace.open_file(&path)).await?
    };
    app.orchestrator.record_transfer(
        &workspace,
        EventName::FileDownloaded,
        &Transferred {
            path: Some(shown),
            size,
            entries: None,
            replaced: None,
        },
    );
    // At most `size` bytes, however a task changes the file meanwhile.
    let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), size);
    let mut response = Body::from_stream(ReaderStream::new(reader)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(response)
}

/// Extract a tar into the workspace
///
/// All of it or nothing: extracted aside (charged to the disk quota as it is written), then
/// merged into the workspace (files replace files, directories merge) once all of it fitted and
/// nothing clashes with the workspace. Files, directories, links that stay inside and hard
/// links to the archive's own files only. Recorded as `file.uploaded` (`size`, `entries`).
#[utoipa::path(put, path = "/v1/sessions/{id}/workspace.tar", operation_id = "putWorkspaceTar", tag = "files",
    params(super::sessions::SessionPath),
    request_body(content = Vec<u8>, content_type = "application/x-tar",
        description = "A tar archive (`application/octet-stream` is taken too)."),
    responses((status = 200, description = "Extracted.", body = Transferred),
        errors::NotFound, errors::Conflict, errors::UnsupportedMediaType,
        errors::UnprocessableEntity, errors::InsufficientStorage))]
pub async fn put_tar(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if !["application/x-tar", "application/octet-stream"].contains(&essence.as_str()) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "send the archive as `Content-Type: application/x-tar`",
        ));
    }
    let workspace = Arc::new(workspace(&app, caller, id).await?);
    if let Some(refused) = refuse_announced(&headers, &workspace) {
        return Err(refused);
    }
    let mut reader = body_reader(body);
    let extracted = {
        let workspace = workspace.clone();
        run_blocking(move || workspace.extract_tar(&mut reader)).await?
    };
    app.orchestrator
        .record_transfer(&workspace, EventName::FileUploaded, &extracted);
    Ok((StatusCode::OK, Json(extracted)).into_response())
}

/// Bytes of the archive handed to the response at a time.
const CHUNK: usize = 64 * 1024;

/// Download the workspace as a tar
///
/// Files, directories and symbolic links (as links), streamed as the archive is written.
/// Recorded as `file.downloaded` (`size`, `entries`) once all of it was sent.
#[utoipa::path(get, path = "/v1/sessions/{id}/workspace.tar", operation_id = "getWorkspaceTar", tag = "files",
    params(super::sessions::SessionPath),
    responses((status = 200, description = "The archive.", content_type = "application/x-tar", body = Vec<u8>),
        errors::NotFound, errors::Conflict))]
pub async fn get_tar(
    State(app): State<Arc<App>>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let workspace = Arc::new(workspace(&app, caller, id).await?);
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let session = workspace.session().to_owned();
    let orchestrator = app.orchestrator.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = std::io::BufWriter::with_capacity(CHUNK, ChannelWriter(sender.clone()));
        let written = workspace.write_tar(&mut out).and_then(|summary| {
            out.flush()?;
            Ok(summary)
        });
        match written {
            Ok(summary) => {
                orchestrator.record_transfer(&workspace, EventName::FileDownloaded, &summary)
            }
            // The client went away, or the workspace could not be read: the body ends with an
            // error, so the client sees a cut archive, never a short one that looks whole.
            Err(error) => {
                tracing::debug!(%error, "a workspace archive was not completed");
                let _ = sender.blocking_send(Err(std::io::Error::other(error.to_string())));
            }
        }
    });
    let mut response =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    if let Ok(disposition) =
        HeaderValue::from_str(&format!("attachment; filename=\"{session}.tar\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

/// Hands what is written to the response body; fails once the client is gone.
struct ChannelWriter(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The path of a workspace file.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct FilePath {
    /// The session's id, `s_...`.
    id: String,
    /// The file, relative to the workspace; may hold `/`. Never absolute, never `..`, never
    /// through a symbolic link.
    path: String,
}
