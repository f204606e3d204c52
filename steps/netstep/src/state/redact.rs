//! Redaction of secrets in URLs and messages: a SAS signature (`sig=...`) must never reach an
//! error text or a log line.

/// Replaces the value of every `sig=` query parameter (case-insensitive, also when it appears
/// in a longer message) by `REDACTED`. The value ends at `&`, `#`, whitespace, a quote, `)`,
/// `>` or the end of the text.
pub fn redact_secrets(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find("sig=") {
        let at = search + found;
        // Only a parameter boundary counts: start, '?', '&', ';' or whitespace/quote before it.
        let boundary = at == 0
            || matches!(
                bytes[at - 1],
                b'?' | b'&' | b';' | b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'('
            );
        let value_start = at + 4;
        if !boundary {
            search = value_start;
            continue;
        }
        let mut end = value_start;
        while end < bytes.len()
            && !matches!(
                bytes[end],
                b'&' | b'#' | b' ' | b'\t' | b'\n' | b'\r' | b'"' | b'\'' | b')' | b'>'
            )
        {
            end += 1;
        }
        out.push_str(&text[copied..value_start]);
        out.push_str("REDACTED");
        copied = end;
        search = end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::redact_secrets;

    #[test]
    fn redacts_sig_everywhere() {
        assert_eq!(
            redact_secrets("https://a.blob.core.windows.net/c?sv=2025&sig=abc%2F%3D&se=x"),
            "https://a.blob.core.windows.net/c?sv=2025&sig=REDACTED&se=x"
        );
        assert_eq!(redact_secrets("?SIG=abc"), "?SIG=REDACTED");
        assert_eq!(
            redact_secrets("error sending request for url (http://h/c?sig=zz): refused"),
            "error sending request for url (http://h/c?sig=REDACTED): refused"
        );
        assert_eq!(redact_secrets("sig=a sig=b"), "sig=REDACTED sig=REDACTED");
        // Not a parameter: left alone.
        assert_eq!(redact_secrets("config=1&xsig=2"), "config=1&xsig=2");
        assert_eq!(redact_secrets("no secrets"), "no secrets");
    }
}
