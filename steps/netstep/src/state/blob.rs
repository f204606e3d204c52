//! Azure Blob backend (official `azure_storage_blob` 1.x crate).
//!
//! Conditional writes map to `If-None-Match: *` (create) and `If-Match: <etag>` (replace);
//! a `409 BlobAlreadyExists` / `412 ConditionNotMet` becomes [`CreateOutcome::Exists`] or a
//! `Conflict` error. Errors keep the HTTP status and the `x-ms-error-code`.

use std::sync::Arc;

use azure_core::error::ErrorKind;
use azure_core::http::{Etag, RequestContent};
use azure_storage_blob::BlobContainerClient;
use azure_storage_blob::models::{
    BlobClientAcquireLeaseOptions, BlobClientAcquireLeaseResultHeaders,
    BlobClientBreakLeaseOptions, BlobClientDownloadOptions, BlobClientUploadOptions,
    BlobContainerClientListBlobsOptions,
};
use futures::TryStreamExt;

use super::error::{StateError, StateErrorKind};
use super::{CreateOutcome, Versioned};

#[derive(Clone)]
pub(crate) struct BlobBackend {
    container: Arc<BlobContainerClient>,
}

impl std::fmt::Debug for BlobBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobBackend")
            .field(
                "container",
                &super::redact::redact_secrets(self.container.url().as_str()),
            )
            .finish()
    }
}

/// Status and storage error code of an SDK error, if it was an HTTP response.
pub(crate) fn http_parts(e: &azure_core::Error) -> (Option<u16>, Option<String>) {
    match e.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => (Some(u16::from(*status)), error_code.clone()),
        _ => (None, None),
    }
}

/// The first line of `<Message>` in a storage error body.
fn service_message(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Message>")? + "<Message>".len();
    let end = start + text[start..].find("</Message>")?;
    let first = text[start..end].lines().next()?.trim();
    (!first.is_empty()).then(|| first.to_owned())
}

fn describe(e: &azure_core::Error) -> String {
    use std::error::Error as _;
    if let ErrorKind::HttpResponse {
        status,
        raw_response: Some(raw),
        ..
    } = e.kind()
    {
        let message = service_message(raw.body().as_ref())
            .unwrap_or_else(|| status.canonical_reason().into_owned());
        let request_id = raw
            .headers()
            .get_optional_string(&azure_core::http::headers::HeaderName::from_static(
                "x-ms-request-id",
            ))
            .map(|id| format!(" (request id {id})"))
            .unwrap_or_default();
        return format!("{message}{request_id}");
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Maps an SDK error to a [`StateError`] (status classes: 401/403 auth, 404 not found,
/// 409/412 conflict, 408/429/5xx and connection failures unavailable).
pub(crate) fn map_err(op: &'static str, path: &str, e: &azure_core::Error) -> StateError {
    let (status, code) = http_parts(e);
    let kind = match (e.kind(), status) {
        (_, Some(401 | 403)) => StateErrorKind::Auth,
        (_, Some(404)) => StateErrorKind::NotFound,
        (_, Some(409 | 412)) => StateErrorKind::Conflict,
        (_, Some(408 | 429 | 500..=599)) => StateErrorKind::Unavailable,
        (_, Some(_)) => StateErrorKind::Service,
        (ErrorKind::Connection | ErrorKind::Io, None) => StateErrorKind::Unavailable,
        (ErrorKind::Credential, None) => StateErrorKind::Auth,
        _ => StateErrorKind::Service,
    };
    let mut message = describe(e);
    if code.as_deref() == Some("ContainerNotFound") {
        message = format!("the container does not exist (create it first): {message}");
    }
    StateError::new(kind, op, Some(path), message).with_http(status, code)
}

fn is_code(e: &azure_core::Error, status: u16, codes: &[&str]) -> bool {
    let (s, c) = http_parts(e);
    s == Some(status) && (codes.is_empty() || c.as_deref().is_some_and(|c| codes.contains(&c)))
}

impl BlobBackend {
    pub(crate) fn new(container: BlobContainerClient) -> Self {
        BlobBackend {
            container: Arc::new(container),
        }
    }

    pub(crate) fn blob(&self, name: &str) -> azure_storage_blob::BlobClient {
        self.container.blob_client(name)
    }

    pub(crate) async fn read(
        &self,
        op: &'static str,
        name: &str,
    ) -> Result<Option<Versioned>, StateError> {
        let blob = self.blob(name);
        let res = match blob
            .download(Some(BlobClientDownloadOptions::default()))
            .await
        {
            Ok(r) => r,
            Err(e) if is_code(&e, 404, &["BlobNotFound"]) => return Ok(None),
            Err(e) => return Err(map_err(op, name, &e)),
        };
        let etag = res.properties.etag.as_ref().map(|e| e.to_string());
        let bytes = res
            .body
            .collect()
            .await
            .map_err(|e| map_err(op, name, &e))?;
        let etag = etag.ok_or_else(|| {
            StateError::new(
                StateErrorKind::Service,
                op,
                Some(name),
                "download response has no ETag",
            )
        })?;
        Ok(Some(Versioned {
            bytes: bytes.to_vec(),
            etag,
        }))
    }

    pub(crate) async fn create(
        &self,
        op: &'static str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<CreateOutcome, StateError> {
        let opts = BlobClientUploadOptions {
            blob_content_type: Some("application/json".into()),
            ..Default::default()
        }
        .if_not_exists();
        match self
            .blob(name)
            .upload(RequestContent::from(bytes), Some(opts))
            .await
        {
            Ok(r) => Ok(CreateOutcome::Created(
                r.etag.map(|e| e.to_string()).unwrap_or_default(),
            )),
            Err(e) if is_code(&e, 409, &["BlobAlreadyExists"]) || is_code(&e, 412, &[]) => {
                Ok(CreateOutcome::Exists)
            }
            Err(e) => Err(map_err(op, name, &e)),
        }
    }

    pub(crate) async fn replace(
        &self,
        op: &'static str,
        name: &str,
        bytes: Vec<u8>,
        etag: &str,
        lease_id: Option<String>,
    ) -> Result<String, StateError> {
        let opts = BlobClientUploadOptions {
            blob_content_type: Some("application/json".into()),
            if_match: Some(Etag::from(etag.to_owned())),
            lease_id,
            ..Default::default()
        };
        match self
            .blob(name)
            .upload(RequestContent::from(bytes), Some(opts))
            .await
        {
            Ok(r) => Ok(r.etag.map(|e| e.to_string()).unwrap_or_default()),
            Err(e)
                if is_code(&e, 412, &["ConditionNotMet"])
                    || is_code(&e, 404, &["BlobNotFound"]) =>
            {
                let mut err = map_err(op, name, &e);
                err = StateError::new(
                    StateErrorKind::Conflict,
                    op,
                    Some(name),
                    format!(
                        "another writer changed or deleted it since it was read (expected ETag \
                         {etag}); {}",
                        err.message()
                    ),
                )
                .with_http(err.status(), err.error_code().map(str::to_owned));
                Err(err)
            }
            Err(e) => Err(map_err(op, name, &e)),
        }
    }

    /// Overwrites `name` unconditionally (used only for the lock blob's holder info, under the
    /// lease).
    pub(crate) async fn overwrite_leased(
        &self,
        op: &'static str,
        name: &str,
        bytes: Vec<u8>,
        lease_id: &str,
    ) -> Result<(), StateError> {
        let opts = BlobClientUploadOptions {
            blob_content_type: Some("application/json".into()),
            lease_id: Some(lease_id.to_owned()),
            ..Default::default()
        };
        self.blob(name)
            .upload(RequestContent::from(bytes), Some(opts))
            .await
            .map(|_| ())
            .map_err(|e| map_err(op, name, &e))
    }

    /// Blob names under `prefix` (full names).
    pub(crate) async fn list(
        &self,
        op: &'static str,
        prefix: &str,
    ) -> Result<Vec<String>, StateError> {
        let opts = BlobContainerClientListBlobsOptions {
            prefix: Some(prefix.to_owned()),
            ..Default::default()
        };
        let mut pager = self
            .container
            .list_blobs(Some(opts))
            .map_err(|e| map_err(op, prefix, &e))?;
        let mut names = Vec::new();
        while let Some(item) = pager
            .try_next()
            .await
            .map_err(|e| map_err(op, prefix, &e))?
        {
            if let Some(n) = item.name {
                names.push(n);
            }
        }
        Ok(names)
    }

    /// Tries once to acquire a lease; `Ok(None)` when another lease is active.
    pub(crate) async fn try_acquire_lease(
        &self,
        op: &'static str,
        name: &str,
        duration_s: i32,
        proposed_id: &str,
    ) -> Result<Option<String>, StateError> {
        let blob = self.blob(name);
        let opts = BlobClientAcquireLeaseOptions {
            proposed_lease_id: Some(proposed_id.to_owned()),
            ..Default::default()
        };
        match blob.acquire_lease(duration_s, Some(opts)).await {
            Ok(r) => {
                let id = r
                    .lease_id()
                    .map_err(|e| map_err(op, name, &e))?
                    .unwrap_or_else(|| proposed_id.to_owned());
                Ok(Some(id))
            }
            Err(e) if is_code(&e, 409, &["LeaseAlreadyPresent"]) => Ok(None),
            Err(e) => Err(map_err(op, name, &e)),
        }
    }

    pub(crate) async fn renew_lease(
        &self,
        op: &'static str,
        name: &str,
        lease_id: &str,
    ) -> Result<(), azure_core::Error> {
        let _ = op;
        self.blob(name)
            .renew_lease(lease_id.to_owned(), None)
            .await
            .map(|_| ())
    }

    /// Breaks the active lease on `name` at once, if the blob still has ETag `etag`. `Ok(false)`
    /// when there is no active lease or the blob changed since it was read.
    pub(crate) async fn break_lease(
        &self,
        op: &'static str,
        name: &str,
        etag: &str,
    ) -> Result<bool, StateError> {
        let opts = BlobClientBreakLeaseOptions {
            break_period: Some(0),
            if_match: Some(Etag::from(etag.to_owned())),
            ..Default::default()
        };
        match self.blob(name).break_lease(Some(opts)).await {
            Ok(_) => Ok(true),
            Err(e) if is_code(&e, 409, &[]) || is_code(&e, 412, &[]) || is_code(&e, 404, &[]) => {
                Ok(false)
            }
            Err(e) => Err(map_err(op, name, &e)),
        }
    }

    pub(crate) async fn release_lease(
        &self,
        op: &'static str,
        name: &str,
        lease_id: &str,
    ) -> Result<(), StateError> {
        self.blob(name)
            .release_lease(lease_id.to_owned(), None)
            .await
            .map(|_| ())
            .map_err(|e| map_err(op, name, &e))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn service_message_first_line() {
        let body = br#"<?xml version="1.0" encoding="utf-8"?><Error><Code>ContainerNotFound</Code><Message>The specified container does not exist.
RequestId:abc
Time:2026-11-26T10:40:41Z</Message></Error>"#;
        assert_eq!(
            super::service_message(body).as_deref(),
            Some("The specified container does not exist.")
        );
        assert_eq!(super::service_message(b""), None);
    }
}
