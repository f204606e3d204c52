//! `{{...}}` template tags: extraction (for lint) and substitution (for runs).

/// A problem with a template tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("failed to resolve {{{{{0}}}}}")]
    Unresolved(String),
    #[error("expression tags {{{{={0}}}}} are not supported by netstep-run")]
    Expression(String),
    #[error("unterminated `{{{{` in `{0}`")]
    Unterminated(String),
}

/// The tags (`inputs.parameters.x`, trimmed) used in `s`, in order.
pub fn tags(s: &str) -> Result<Vec<String>, TagError> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TagError::Unterminated(s.to_string()));
        };
        out.push(after[..end].trim().to_string());
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// Replaces every tag by `lookup(tag)`; collects all failures.
pub fn substitute(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, TagError> {
    if !s.contains("{{") {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TagError::Unterminated(s.to_string()));
        };
        let tag = after[..end].trim();
        if let Some(expr) = tag.strip_prefix('=') {
            return Err(TagError::Expression(expr.trim().to_string()));
        }
        match lookup(tag) {
            Some(v) => out.push_str(&v),
            None => return Err(TagError::Unresolved(tag.to_string())),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_and_reports_unresolved() {
        let f = |t: &str| (t == "a.b").then(|| "X".to_string());
        assert_eq!(substitute("--x={{a.b}}/{{ a.b }}", &f).unwrap(), "--x=X/X");
        assert_eq!(
            substitute("{{a.c}}", &f).unwrap_err().to_string(),
            "failed to resolve {{a.c}}"
        );
        assert!(matches!(
            substitute("{{=sprig.x}}", &f),
            Err(TagError::Expression(_))
        ));
        assert_eq!(tags("a{{ x }}b{{y}}").unwrap(), vec!["x", "y"]);
        assert!(tags("{{x").is_err());
    }
}
