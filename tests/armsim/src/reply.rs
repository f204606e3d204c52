//! HTTP replies and the error bodies ARM and the resource providers send.

use serde_json::{Value, json};

/// One answer to one ARM request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    /// Close the connection instead of answering (fault injection).
    pub drop_connection: bool,
}

impl Reply {
    pub fn new(status: u16, body: Option<Value>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body,
            drop_connection: false,
        }
    }
    pub fn ok(body: Value) -> Self {
        Self::new(200, Some(body))
    }
    pub fn status(status: u16, body: Value) -> Self {
        Self::new(status, Some(body))
    }
    pub fn empty(status: u16) -> Self {
        Self::new(status, None)
    }
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }

    /// `{"error":{"code","message"}}` (CloudError).
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::status(
            status,
            json!({"error": {"code": code, "message": message.into()}}),
        )
    }
    /// CloudError with `details` (the Network RP's shape for parse errors).
    pub fn error_details(
        status: u16,
        code: &str,
        message: impl Into<String>,
        details: Vec<Value>,
    ) -> Self {
        Self::status(
            status,
            json!({"error": {"code": code, "message": message.into(), "details": details}}),
        )
    }
    /// An error produced by ARM's front door rather than the resource provider.
    pub fn gateway(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::error(status, code, message).header("x-ms-failure-cause", "gateway")
    }

    /// 404 for a missing top-level resource, answered by ARM itself.
    pub fn resource_not_found(arm_type: &str, name: &str, rg: &str) -> Self {
        Self::gateway(
            404,
            "ResourceNotFound",
            format!(
                "The Resource '{arm_type}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    }
    /// 404 for a missing AVNM child resource, as the Network RP phrases it.
    pub fn avnm_not_found(id: &str) -> Self {
        Self::status(
            404,
            json!({"error": {"message": format!("Resource [{id}] does not exist or has been deleted"), "code": "NotFound"}}),
        )
    }
    /// 404 for a missing Network RP child (subnet, peering, rule collection group).
    pub fn network_child_not_found(id: &str) -> Self {
        Self::status(
            404,
            json!({"error": {"code": "NotFound", "message": format!("Resource {id} not found."), "details": []}}),
        )
    }
    pub fn rg_not_found(rg: &str) -> Self {
        Self::gateway(
            404,
            "ResourceGroupNotFound",
            format!("Resource group '{rg}' could not be found."),
        )
    }
    pub fn parent_not_found(parent_type: &str, parent_name: &str) -> Self {
        Self::gateway(
            404,
            "ParentResourceNotFound",
            format!(
                "Failed to perform 'read' on resource(s) of type '{parent_type}', because the parent resource '{parent_name}' could not be found."
            ),
        )
    }
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::error(400, code, message)
    }
    /// The Network RP's answer to a body it cannot bind to the swagger model.
    pub fn invalid_format(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self::error_details(
            400,
            "InvalidRequestFormat",
            format!("Cannot parse the request. {detail}"),
            vec![json!({"code": "InvalidJson", "message": detail})],
        )
    }
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::error(409, code, message)
    }
}
